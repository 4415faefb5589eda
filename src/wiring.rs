//! Builds the service from its configuration, once at start: the SSM client, the rules and
//! token sources (fetched here, before the first request), and the handler's settings.

use std::sync::Arc;

use crate::config::AnswerMode;
use crate::config::{Config, RulesLocation, TokenLocation};
use crate::handler::{App, Settings, Signatures};
use crate::rules::{self, Rules};
use crate::sources::cache::{Cached, SystemClock};
use crate::sources::taskrouter_api::{Annotator, Credentials, QueueNames, TaskRouterApi};
use crate::sources::tokens::{AuthTokens, TokenSource};
use crate::sources::{AnyRules, RulesSource, StaticRules, parse_rules, ssm};

/// Which face of the binary is starting: they differ in what they accept missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// Refuses to start without a rules source, or without tokens while signatures are
    /// enforced.
    Lambda,
    /// Falls back to the embedded example rules and to unsigned requests, loudly.
    Serve,
}

/// Assembles the service. Parameters are fetched once here, rules and tokens together; the
/// service starts even when those fetches fail (the caches retry).
pub async fn build(config: &Config, face: Face) -> Result<App<AnyRules>, String> {
    if face == Face::Lambda && config.rules == RulesLocation::Unset {
        return Err("no rules source: set RULES_PARAMETER (an SSM parameter) or RULES_FILE".into());
    }
    if face == Face::Lambda && config.enforce_signatures && config.tokens == TokenLocation::Unset {
        return Err(
            "signature validation is enforced but no auth token is configured: \
                    set TWILIO_AUTH_TOKEN_PARAMETER (an SSM SecureString) or TWILIO_AUTH_TOKEN"
                .into(),
        );
    }
    let needs_ssm = matches!(config.rules, RulesLocation::Parameter(_))
        || matches!(config.tokens, TokenLocation::Parameter(_));
    let client = if needs_ssm {
        Some(ssm::client().await)
    } else {
        None
    };
    let parameter = |name: &str| {
        client
            .clone()
            .map(|client| ssm::Parameter::new(client, name))
            .ok_or_else(|| "internal: SSM client missing".to_owned())
    };

    let rules = match &config.rules {
        RulesLocation::Parameter(name) => AnyRules::Parameter(Cached::new(
            parameter(name)?,
            parse_rules,
            "rules",
            config.ttl,
            SystemClock,
        )),
        RulesLocation::File(path) => {
            AnyRules::Static(StaticRules::from_file(path).map_err(|e| e.to_string())?)
        }
        RulesLocation::Unset => {
            let example = Rules::from_json(rules::EXAMPLE_DOCUMENT)
                .map_err(|e| format!("embedded example: {e}"))?;
            AnyRules::Static(StaticRules::new(example, "the embedded example document"))
        }
    };

    let tokens = match &config.tokens {
        TokenLocation::Parameter(name) => {
            Some(TokenSource::parameter(parameter(name)?, config.ttl))
        }
        TokenLocation::Fixed(secret) => Some(TokenSource::Fixed(Arc::new(
            AuthTokens::parse(&secret.0).map_err(|e| format!("TWILIO_AUTH_TOKEN: {e}"))?,
        ))),
        TokenLocation::Unset => None,
    }
    .map(Arc::new);

    let signatures = match (&tokens, config.enforce_signatures) {
        (_, false) => {
            tracing::warn!(
                "TWILIO_SIGNATURE_VALIDATION=off: callbacks are answered without checking X-Twilio-Signature"
            );
            Signatures::Off
        }
        (Some(tokens), true) => Signatures::Enforce {
            tokens: Arc::clone(tokens),
            public_url: config.public_url.clone(),
        },
        (None, true) => {
            tracing::warn!(
                "no auth token (TWILIO_AUTH_TOKEN or TWILIO_AUTH_TOKEN_PARAMETER): \
                 serving WITHOUT signature validation; any client can ask for decisions"
            );
            Signatures::Off
        }
    };

    let credentials = match (&config.api_key, &tokens) {
        (Some((sid, secret)), _) => Some(Credentials::ApiKey {
            sid: sid.clone(),
            secret: secret.0.clone(),
        }),
        (None, Some(tokens)) => Some(Credentials::AuthToken(Arc::clone(tokens))),
        (None, None) => None,
    };
    let api = credentials
        .map(|credentials| TaskRouterApi::new(&config.api_base_url, credentials).map(Arc::new))
        .transpose()?;
    let queue_names = api.clone().map(|api| QueueNames::new(api, config.ttl));
    let annotator = match (config.mode, api) {
        (AnswerMode::Conference, _) => None,
        (AnswerMode::Annotate, Some(api)) => Some(Annotator::new(api)),
        (AnswerMode::Annotate, None) => {
            return Err("ANSWER_MODE=annotate writes decisions through the TaskRouter REST API: \
                        set TWILIO_AUTH_TOKEN_PARAMETER, TWILIO_AUTH_TOKEN or TWILIO_API_KEY and TWILIO_API_SECRET"
                .into());
        }
    };

    // The first fetches, together: this also opens the TLS connection to SSM before the
    // first caller needs it.
    let first_rules = async {
        if let AnyRules::Parameter(cache) = &rules {
            cache.refresh().await;
        }
    };
    let first_tokens = async {
        if let Some(TokenSource::Parameter(cache)) = tokens.as_deref() {
            cache.refresh().await;
        }
    };
    tokio::join!(first_rules, first_tokens);
    if queue_names.is_none()
        && rules
            .current()
            .await
            .is_some_and(|r| r.rules.names_queues())
    {
        tracing::warn!(
            "the rules name queues but no TaskRouter credentials are configured \
             (TWILIO_AUTH_TOKEN, TWILIO_AUTH_TOKEN_PARAMETER or TWILIO_API_KEY): \
             calls that need a queue name follow ON_RULES_UNAVAILABLE"
        );
    }

    Ok(App {
        rules,
        settings: Settings {
            fail_policy: config.fail_policy,
            account_sid: config.account_sid.clone(),
            signatures,
            queue_names,
            mode: config.mode,
            annotator,
        },
    })
}
