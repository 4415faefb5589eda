//! Builds the service from its configuration, once at start: the SSM client, the rules and
//! token sources (fetched here, before the first request), and the handler's settings.

use std::sync::Arc;

use crate::config::AnswerMode;
use crate::config::{Config, RulesLocation, TokenLocation};
use crate::reconcile::Reconciler;
use crate::rules::{self, Rules};
use crate::service::media::Media;
use crate::service::{self, RulesSource};
use crate::sources::cache::{Cached, FETCH_DEADLINE, FetchError, Fetched, SystemClock};
use crate::sources::https::RootsError;
use crate::sources::ledger_table::LedgerTable;
use crate::sources::media_store::S3Media;
use crate::sources::taskrouter_api::{Annotator, Credentials, QueueNames, TaskRouterApi};
use crate::sources::tokens::{AnyTokens, AuthTokens, NoToken};
use crate::sources::voice_api::VoiceApi;
use crate::sources::voice_archive::VoiceArchive;
use crate::sources::{AnyRules, StaticRules, parse_rules, ssm};
use crate::sources::{FileRulesError, ssm::ClientError};

/// The service on its real adapters: rules `S` (the configured source unless a test says
/// otherwise), TaskRouter's REST API for the queue directory and task annotations, and the
/// configured auth tokens.
pub type App<S = AnyRules> = service::App<S, QueueNames, Annotator, AnyTokens, Voice, LedgerTable>;
/// [`service::Settings`] on the real adapters.
pub type Settings = service::Settings<QueueNames, Annotator, AnyTokens, Voice, LedgerTable>;
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
    // Made when a parameter or the ledger first needs them, so a source cannot be without
    // one: the SDK's configuration, shared, and the SSM client on it.
    let mut aws = None;
    let mut client = None;
    let ledger = match &config.ledger_table {
        Some(table) => Some(LedgerTable::new(
            sdk_config(&mut aws).await?,
            table,
            config.ledger_retention_days,
        )),
        None => None,
    };

    let rules = match &config.rules {
        RulesLocation::Parameter(name) => AnyRules::Parameter(
            Cached::new(
                ssm_parameter(&mut aws, &mut client, name).await?,
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
            ssm_parameter(&mut aws, &mut client, name).await?,
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
    let media = media(config, &mut aws).await?;
    let enforcement = match (config.enforcement, credentials(), &api) {
        (false, _, _) => None,
        (true, Some(credentials), Some(api)) => {
            let voice = TaskRouterApi::new(&config.voice_api_base_url, credentials)?;
            Some(service::Enforcer {
                annotations: Annotator::new(Arc::clone(api)),
                recordings: VoiceApi::new(Arc::new(voice)),
                media,
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
    // The ledger's connections are opened beside the first reads, so neither waits for the
    // other and the first callback does not wait for it.
    let fetched = async {
        if let Some(client) = &client {
            first_fetches(client, rules_cache, tokens_cache).await;
        }
    };
    tokio::join!(fetched, warm(ledger.as_ref()));
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
            ledger,
        },
    })
}

/// Opens the ledger's connections during start (the first callback would otherwise wait for
/// their handshakes), within [`LEDGER_WARM_UP`]. A ledger that cannot be reached is logged, never
/// fatal: callbacks are answered as without one, and each failed write is counted then.
async fn warm(ledger: Option<&LedgerTable>) {
    let Some(ledger) = ledger else {
        return;
    };
    let cause = match tokio::time::timeout(LEDGER_WARM_UP, ledger.warm()).await {
        Ok(Ok(())) => return,
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no answer within {} ms", LEDGER_WARM_UP.as_millis()),
    };
    tracing::warn!(
        table = ledger.table(),
        cause = %cause,
        "ledger not reached at start; each callback will try its own write"
    );
}

/// How long start waits for the ledger's first answer ([`warm`]): beside the first SSM read,
/// which has a deadline of its own, so a ledger that does not answer adds at most this to a
/// start.
pub const LEDGER_WARM_UP: std::time::Duration = std::time::Duration::from_millis(500);

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

/// Reconciliation on the real adapters: the Voice API's archive and recordings, the ledger.
pub type Sweeper = Reconciler<VoiceArchive, LedgerTable, VoiceApi>;

/// Why `reconcile` or `explain` cannot run: a usage or configuration fault (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error(
        "{0} reads the ledger: set LEDGER_TABLE to the DynamoDB table of first decisions (the stack's LedgerTable output)"
    )]
    NoLedger(&'static str),
    #[error("reconcile lists the account's recordings: set TWILIO_ACCOUNT_SID")]
    NoAccount,
    #[error(
        "reconcile reads the Voice API: set TWILIO_AUTH_TOKEN_PARAMETER, TWILIO_AUTH_TOKEN or TWILIO_API_KEY and TWILIO_API_SECRET"
    )]
    NoCredentials,
    #[error(transparent)]
    Ssm(#[from] ClientError),
    #[error("TWILIO_AUTH_TOKEN: {0}")]
    Token(NoToken),
    #[error(transparent)]
    Roots(#[from] RootsError),
}

/// The ledger alone, for `explain`.
pub async fn ledger(config: &Config) -> Result<LedgerTable, ProofError> {
    let table = config
        .ledger_table
        .as_deref()
        .ok_or(ProofError::NoLedger("explain"))?;
    let mut aws = None;
    Ok(LedgerTable::new(
        sdk_config(&mut aws).await?,
        table,
        config.ledger_retention_days,
    ))
}

/// Everything `reconcile` (and the sweep) needs: the ledger, the account, and the Voice API
/// with the service's credentials (a token parameter is read here, once).
pub async fn sweeper(config: &Config, fix: bool) -> Result<Sweeper, ProofError> {
    let table = config
        .ledger_table
        .as_deref()
        .ok_or(ProofError::NoLedger("reconcile"))?;
    let account_sid = config.account_sid.clone().ok_or(ProofError::NoAccount)?;
    let mut aws = None;
    let ledger = LedgerTable::new(
        sdk_config(&mut aws).await?,
        table,
        config.ledger_retention_days,
    );
    let credentials = match (&config.api_key, &config.tokens) {
        (Some((sid, secret)), _) => Credentials::ApiKey {
            sid: sid.clone(),
            secret: secret.0.clone(),
        },
        (None, TokenLocation::Fixed(secret)) => Credentials::AuthToken(Arc::new(AnyTokens::Fixed(
            Arc::new(AuthTokens::parse(&secret.0).map_err(ProofError::Token)?),
        ))),
        (None, TokenLocation::Parameter(name)) => {
            let client = aws_sdk_ssm::Client::new(sdk_config(&mut aws).await?);
            let tokens = AnyTokens::parameter(ssm::Parameter::new(client, name), config.ttl);
            if let AnyTokens::Parameter(cache) = &tokens {
                cache.refresh().await;
            }
            Credentials::AuthToken(Arc::new(tokens))
        }
        (None, TokenLocation::Unset) => return Err(ProofError::NoCredentials),
    };
    let archive = VoiceArchive::new(TaskRouterApi::new(
        &config.voice_api_base_url,
        credentials.clone(),
    )?);
    let recordings = VoiceApi::new(Arc::new(TaskRouterApi::new(
        &config.voice_api_base_url,
        credentials,
    )?));
    Ok(Reconciler {
        archive,
        ledger,
        recordings,
        account_sid,
        fix,
        media: media(config, &mut aws).await?,
    })
}

/// Recording media in the buckets `RECORDINGS_BUCKETS` names, through S3; none named, no S3
/// client at all.
async fn media(
    config: &Config,
    aws: &mut Option<aws_config::SdkConfig>,
) -> Result<Media, ClientError> {
    if config.recordings_buckets.is_empty() {
        return Ok(Media::none());
    }
    Ok(Media::new(
        S3Media::new(sdk_config(aws).await?),
        config.recordings_buckets.clone(),
    ))
}

/// The AWS SDK's configuration, loaded once, when first needed.
pub async fn sdk_config(
    aws: &mut Option<aws_config::SdkConfig>,
) -> Result<&aws_config::SdkConfig, ClientError> {
    if aws.is_none() {
        *aws = Some(ssm::sdk_config().await?);
    }
    aws.as_ref().ok_or(ClientError::Unloaded)
}

/// An SSM parameter on the one SSM client, which the first parameter creates.
async fn ssm_parameter(
    aws: &mut Option<aws_config::SdkConfig>,
    client: &mut Option<aws_sdk_ssm::Client>,
    name: &str,
) -> Result<ssm::Parameter, ClientError> {
    let client = match client {
        Some(client) => client.clone(),
        None => client
            .insert(aws_sdk_ssm::Client::new(sdk_config(aws).await?))
            .clone(),
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
