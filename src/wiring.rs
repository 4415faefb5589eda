//! Builds the service from its configuration, once at start: the SSM client, the rules and
//! token sources (fetched here, before the first request), and the handler's settings.

use std::sync::Arc;

use crate::config::AnswerMode;
use crate::config::{Config, RulesLocation, TokenLocation};
use crate::rules::{self, Rules};
use crate::service::{self, RulesSource};
use crate::sources::cache::{Cached, FETCH_DEADLINE, FetchError, Fetched, SystemClock};
use crate::sources::https::RootsError;
use crate::sources::taskrouter_api::{Annotator, Credentials, QueueNames, TaskRouterApi};
use crate::sources::tokens::{AnyTokens, AuthTokens, NoToken};
use crate::sources::voice_api::VoiceApi;
use crate::sources::{AnyRules, StaticRules, parse_rules, ssm};
use crate::sources::{FileRulesError, ssm::ClientError};

/// The service on its real adapters: rules `S` (the configured source unless a test says
/// otherwise), TaskRouter's REST API for the queue directory and task annotations, and the
/// configured auth tokens.
pub type App<S = AnyRules> = service::App<S, QueueNames, Annotator, AnyTokens, Voice>;
/// [`service::Settings`] on the real adapters.
pub type Settings = service::Settings<QueueNames, Annotator, AnyTokens, Voice>;
/// The Voice API, for enforcement's recordings.
type Voice = VoiceApi;
/// [`service::Signatures`] on the configured tokens.
pub type Signatures = service::Signatures<AnyTokens>;
/// [`service::Mode`] with TaskRouter's REST API as the annotator.
pub type Mode = service::Mode<Annotator>;

/// Which face of the binary is starting: they differ in what they accept missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// Refuses to start without a rules source, or without tokens while signatures are
    /// enforced.
    Lambda,
    /// Falls back to the embedded example rules and to unsigned requests, loudly.
    Serve,
}

/// Why the service cannot start, in one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no rules source: set RULES_PARAMETER (an SSM parameter) or RULES_FILE")]
    NoRulesSource,
    #[error(
        "signature validation is enforced but no auth token is configured: set TWILIO_AUTH_TOKEN_PARAMETER (an SSM SecureString) or TWILIO_AUTH_TOKEN"
    )]
    NoTokenSource,
    #[error(
        "ANSWER_MODE=annotate writes decisions through the TaskRouter REST API: set TWILIO_AUTH_TOKEN_PARAMETER, TWILIO_AUTH_TOKEN or TWILIO_API_KEY and TWILIO_API_SECRET"
    )]
    AnnotateWithoutCredentials,
    #[error(
        "ENFORCEMENT=on stops and deletes recordings through the Voice API: set TWILIO_AUTH_TOKEN_PARAMETER, TWILIO_AUTH_TOKEN or TWILIO_API_KEY and TWILIO_API_SECRET, or ENFORCEMENT=off"
    )]
    EnforcementWithoutCredentials,
    #[error(transparent)]
    Ssm(#[from] ClientError),
    #[error(transparent)]
    RulesFile(#[from] FileRulesError),
    #[error("embedded example: {0}")]
    Example(rules::RulesError),
    #[error("TWILIO_AUTH_TOKEN: {0}")]
    Token(NoToken),
    #[error(transparent)]
    Roots(#[from] RootsError),
}

/// Assembles the service. Parameters are fetched once here, rules and tokens together; the
/// service starts even when those fetches fail (the caches retry).
pub async fn build(config: &Config, face: Face) -> Result<App<AnyRules>, StartError> {
    if face == Face::Lambda && config.rules == RulesLocation::Unset {
        return Err(StartError::NoRulesSource);
    }
    if face == Face::Lambda && config.enforce_signatures && config.tokens == TokenLocation::Unset {
        return Err(StartError::NoTokenSource);
    }
    if let Some(namespace) = &config.metrics_namespace {
        crate::metrics::use_namespace(namespace);
    }
    // Made when a parameter first needs it, so a source cannot be without one.
    let mut client = None;

    let rules = match &config.rules {
        RulesLocation::Parameter(name) => AnyRules::Parameter(
            Cached::new(
                ssm_parameter(&mut client, name).await?,
                parse_rules,
                "rules",
                config.ttl,
                SystemClock,
            )
            .falling_back(crate::metrics::rules_version_behind),
        ),
        RulesLocation::File(path) => AnyRules::Static(StaticRules::from_file(path)?),
        RulesLocation::Unset => {
            let example = Rules::from_json(rules::EXAMPLE_DOCUMENT).map_err(StartError::Example)?;
            AnyRules::Static(StaticRules::new(example, "the embedded example document"))
        }
    };

    let tokens = match &config.tokens {
        TokenLocation::Parameter(name) => Some(AnyTokens::parameter(
            ssm_parameter(&mut client, name).await?,
            config.ttl,
        )),
        TokenLocation::Fixed(secret) => Some(AnyTokens::Fixed(Arc::new(
            AuthTokens::parse(&secret.0).map_err(StartError::Token)?,
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

    // The same credentials for both Twilio APIs; each client has its own base URL.
    let credentials = || match (&config.api_key, &tokens) {
        (Some((sid, secret)), _) => Some(Credentials::ApiKey {
            sid: sid.clone(),
            secret: secret.0.clone(),
        }),
        (None, Some(tokens)) => Some(Credentials::AuthToken(Arc::clone(tokens))),
        (None, None) => None,
    };
    let api = credentials()
        .map(|credentials| TaskRouterApi::new(&config.api_base_url, credentials).map(Arc::new))
        .transpose()?;
    let enforcement = match (config.enforcement, credentials(), &api) {
        (false, _, _) => None,
        (true, Some(credentials), Some(api)) => {
            let voice = TaskRouterApi::new(&config.voice_api_base_url, credentials)?;
            Some(service::Enforcer {
                annotations: Annotator::new(Arc::clone(api)),
                recordings: VoiceApi::new(Arc::new(voice)),
            })
        }
        (true, _, _) if face == Face::Lambda => {
            return Err(StartError::EnforcementWithoutCredentials);
        }
        (true, _, _) => {
            tracing::warn!(
                "no TaskRouter credentials (TWILIO_AUTH_TOKEN, TWILIO_AUTH_TOKEN_PARAMETER or \
                 TWILIO_API_KEY): /events acknowledges deliveries and enforces nothing"
            );
            None
        }
    };
    let queue_names = api.clone().map(|api| QueueNames::new(api, config.ttl));
    let mode = match (config.mode, api) {
        (AnswerMode::Conference, _) => Mode::Conference,
        (AnswerMode::Annotate, Some(api)) => Mode::Annotate(Annotator::new(api)),
        (AnswerMode::Annotate, None) => return Err(StartError::AnnotateWithoutCredentials),
    };

    let rules_cache = match &rules {
        AnyRules::Parameter(cache) => Some(cache),
        AnyRules::Static(_) => None,
    };
    let tokens_cache = match tokens.as_deref() {
        Some(AnyTokens::Parameter(cache)) => Some(cache),
        _ => None,
    };
    if let Some(client) = &client {
        first_fetches(client, rules_cache, tokens_cache).await;
    }
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
            mode,
            enforcement,
            public_events_url: config.public_events_url.clone(),
        },
    })
}

/// Logs `started` (info) once the service is ready: the version and what it runs with, as
/// built (a fallback `serve` took shows here). Names, never secrets: the rules source is a
/// parameter name, a file path or the embedded example.
pub fn log_started<S: RulesSource>(app: &App<S>) {
    let settings = &app.settings;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        commit = env!("CONDITIONAL_RECORDING_COMMIT"),
        answer_mode = match settings.mode {
            Mode::Conference => "conference",
            Mode::Annotate(_) => "annotate",
        },
        enforcement = if settings.enforcement.is_some() { "on" } else { "off" },
        rules_source = %app.rules.describe(),
        signatures = match settings.signatures {
            Signatures::Enforce { .. } => "enforce",
            Signatures::Off => "off",
        },
        metrics_namespace = crate::metrics::namespace(),
        "started"
    );
}

/// An SSM parameter on the one SSM client, which the first parameter creates.
async fn ssm_parameter(
    client: &mut Option<aws_sdk_ssm::Client>,
    name: &str,
) -> Result<ssm::Parameter, ClientError> {
    let client = match client {
        Some(client) => client.clone(),
        None => client.insert(ssm::client().await?).clone(),
    };
    Ok(ssm::Parameter::new(client, name))
}

/// The first reads of the rules and the tokens: both in one GetParameters call when both are
/// parameters (one round trip, and the one TLS connection later refreshes reuse), each alone
/// otherwise, or when SSM refuses the call as a whole (reading them alone then says which one
/// is at fault).
async fn first_fetches(
    client: &aws_sdk_ssm::Client,
    rules: Option<&crate::sources::ParameterRules>,
    tokens: Option<&Cached<AuthTokens, ssm::Parameter>>,
) {
    let (Some(rules), Some(tokens)) = (rules, tokens) else {
        if let Some(rules) = rules {
            rules.refresh().await;
        }
        if let Some(tokens) = tokens {
            tokens.refresh().await;
        }
        return;
    };
    let names = [rules.name(), tokens.name()];
    let started = std::time::Instant::now();
    let together = tokio::time::timeout(FETCH_DEADLINE, ssm::get_together(client, &names)).await;
    let fetched = match together {
        Ok(Ok(fetched)) => fetched
            .into_iter()
            .map(|one| one.map(|result| result.map_err(FetchError::Store)))
            .collect(),
        Ok(Err(ssm::TogetherFailed::Refused(_))) => vec![None, None],
        Ok(Err(ssm::TogetherFailed::Unreachable(cause))) => {
            vec![Some(Err(FetchError::Store(cause))); 2]
        }
        Err(_) => vec![Some(Err(FetchError::Deadline)); 2],
    };
    let mut fetched = fetched.into_iter();
    let (rules_fetched, tokens_fetched) = (fetched.next().flatten(), fetched.next().flatten());
    tokio::join!(
        settle_or_refresh(rules, rules_fetched, started),
        settle_or_refresh(tokens, tokens_fetched, started)
    );
}

/// Takes what the shared call read for this parameter, or reads it alone when it has nothing.
async fn settle_or_refresh<T: Send + Sync + 'static>(
    cache: &Cached<T, ssm::Parameter>,
    fetched: Option<Result<Fetched, FetchError<ssm::SsmError>>>,
    started: std::time::Instant,
) {
    match fetched {
        Some(result) => cache.settle(result, started).await,
        None => cache.refresh().await,
    }
}
