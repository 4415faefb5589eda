//! Configuration from the environment (SPEC section 5), read once at start.

use std::path::PathBuf;
use std::time::Duration;

/// TaskRouter's REST base when `TWILIO_API_BASE_URL` does not say.
pub const DEFAULT_TASKROUTER_BASE_URL: &str = "https://taskrouter.twilio.com";
/// The Voice REST API (recordings, conferences), when `TWILIO_VOICE_API_BASE_URL` is unset.
pub const DEFAULT_VOICE_API_BASE_URL: &str = "https://api.twilio.com";

/// Where rules come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesLocation {
    /// `RULES_PARAMETER`: an SSM parameter, read through the cache.
    Parameter(String),
    /// `RULES_FILE`: a local file, read once.
    File(PathBuf),
    /// No source configured: `serve` uses the embedded example; Lambda mode refuses to start.
    Unset,
}

/// Where auth tokens for signature validation come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLocation {
    /// `TWILIO_AUTH_TOKEN_PARAMETER`: an SSM SecureString, one token per line.
    Parameter(String),
    /// `TWILIO_AUTH_TOKEN`: the token itself.
    Fixed(Secret),
    Unset,
}

/// A value that must never reach a log: its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub rules: RulesLocation,
    pub ttl: Duration,
    pub fail_policy: FailPolicy,
    pub tokens: TokenLocation,
    /// `TWILIO_SIGNATURE_VALIDATION`: `enforce` (true) or `off`.
    pub enforce_signatures: bool,
    /// `TWILIO_ACCOUNT_SID`: callbacks for any other account are refused.
    pub account_sid: Option<String>,
    /// `PUBLIC_URL`: the only URL a signature may cover, when set.
    pub public_url: Option<String>,
    /// `TWILIO_API_BASE_URL`: the TaskRouter REST API, for queue names.
    pub api_base_url: String,
    /// `TWILIO_API_KEY` and `TWILIO_API_SECRET`, used instead of the auth token when set.
    pub api_key: Option<(String, Secret)>,
    /// `ANSWER_MODE`.
    pub mode: AnswerMode,
    /// `ENFORCEMENT`: `on` (true) or `off`.
    pub enforcement: bool,
    /// `PUBLIC_EVENTS_URL`: the only URL an event delivery's signature may cover, when set
    /// (with a JSON delivery's `bodySHA256` added).
    pub public_events_url: Option<String>,
    /// `TWILIO_VOICE_API_BASE_URL`: the Voice REST API, for recordings and conferences.
    pub voice_api_base_url: String,
    /// `METRICS_NAMESPACE`: the CloudWatch namespace of every metric, when set.
    pub metrics_namespace: Option<String>,
    /// `LEDGER_TABLE`: the DynamoDB table of first decisions and actions, when set.
    pub ledger_table: Option<String>,
    /// `LEDGER_RETENTION_DAYS`: how long a ledger entry is kept.
    pub ledger_retention_days: u32,
    /// `RECORDINGS_BUCKETS`: the S3 buckets recording media may be deleted from (Twilio's
    /// external storage); empty: none.
    pub recordings_buckets: Vec<String>,
}

/// How a decision reaches TaskRouter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnswerMode {
    /// Answer with a `conference` instruction carrying `conference_record`.
    #[default]
    Conference,
    /// Answer `{}` and write the decision into the task's attributes.
    Annotate,
}

/// Days a ledger entry is kept when `LEDGER_RETENTION_DAYS` is not set: a year and a month,
/// so a yearly audit still finds last year's calls.
pub const DEFAULT_LEDGER_RETENTION_DAYS: u32 = 400;

pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
const MAX_TTL_SECONDS: u64 = 86_400;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("ON_RULES_UNAVAILABLE must be do-not-record or record")]
    FailPolicy,
    #[error(
        "RULES_CACHE_TTL_SECONDS must be a whole number of seconds from 1 to {MAX_TTL_SECONDS}"
    )]
    Ttl,
    #[error("TWILIO_SIGNATURE_VALIDATION must be enforce or off")]
    Validation,
    #[error("TWILIO_ACCOUNT_SID must be an Account SID (AC followed by 32 lowercase hex digits)")]
    AccountSid,
    #[error("PUBLIC_URL must be an absolute http:// or https:// URL without a fragment")]
    PublicUrl,
    #[error("ANSWER_MODE must be conference or annotate")]
    AnswerMode,
    #[error("ENFORCEMENT must be on or off")]
    Enforcement,
    #[error("PUBLIC_EVENTS_URL must be an absolute http:// or https:// URL without a fragment")]
    PublicEventsUrl,
    #[error("TWILIO_VOICE_API_BASE_URL must be an absolute http:// or https:// URL")]
    VoiceApiBaseUrl,
    #[error("TWILIO_API_BASE_URL must be an absolute http:// or https:// URL")]
    ApiBaseUrl,
    #[error(
        "METRICS_NAMESPACE must be 1 to 255 letters, digits and . - _ / # : or spaces, and not start with AWS/"
    )]
    MetricsNamespace,
    #[error("LEDGER_TABLE must be a DynamoDB table name: 3 to 255 letters, digits and _ - .")]
    LedgerTable,
    #[error("LEDGER_RETENTION_DAYS must be a whole number of days from 1 to 3650")]
    LedgerRetention,
    #[error("RECORDINGS_BUCKETS: {0}")]
    RecordingsBuckets(crate::media::BucketsError),
    #[error(
        "TWILIO_API_KEY (an API key SID: SK followed by 32 lowercase hex digits) and TWILIO_API_SECRET go together"
    )]
    ApiKey,
}

impl Config {
    /// Reads the configuration through `var` (the process environment in production).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        // Empty counts as unset, so an override (sam local's env.json) can clear a value.
        let set = |name: &'static str| -> Result<Option<String>, ConfigError> {
            Ok(var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()))
        };
        let rules = match (set("RULES_PARAMETER")?, set("RULES_FILE")?) {
            (Some(name), _) => RulesLocation::Parameter(name),
            (None, Some(path)) => RulesLocation::File(PathBuf::from(path)),
            (None, None) => RulesLocation::Unset,
        };
        let ttl = match set("RULES_CACHE_TTL_SECONDS")? {
            Some(text) => match text.parse::<u64>() {
                Ok(seconds @ 1..=MAX_TTL_SECONDS) => Duration::from_secs(seconds),
                _ => return Err(ConfigError::Ttl),
            },
            None => DEFAULT_TTL,
        };
        let fail_policy = match set("ON_RULES_UNAVAILABLE")? {
            Some(text) => FailPolicy::parse(&text).ok_or(ConfigError::FailPolicy)?,
            None => FailPolicy::default(),
        };
        let tokens = match (
            set("TWILIO_AUTH_TOKEN_PARAMETER")?,
            set("TWILIO_AUTH_TOKEN")?,
        ) {
            (Some(name), _) => TokenLocation::Parameter(name),
            (None, Some(token)) => TokenLocation::Fixed(Secret(token)),
            (None, None) => TokenLocation::Unset,
        };
        let enforce_signatures = match set("TWILIO_SIGNATURE_VALIDATION")?.as_deref() {
            None | Some("enforce") => true,
            Some("off") => false,
            Some(_) => return Err(ConfigError::Validation),
        };
        let account_sid = set("TWILIO_ACCOUNT_SID")?;
        if account_sid
            .as_deref()
            .is_some_and(|sid| !crate::sid::is_sid(sid, "AC"))
        {
            return Err(ConfigError::AccountSid);
        }
        let public_url = set("PUBLIC_URL")?;
        if public_url.as_deref().is_some_and(|url| !is_public_url(url)) {
            return Err(ConfigError::PublicUrl);
        }
        let api_base_url =
            set("TWILIO_API_BASE_URL")?.unwrap_or_else(|| DEFAULT_TASKROUTER_BASE_URL.to_owned());
        if !is_public_url(&api_base_url) || api_base_url.contains('?') {
            return Err(ConfigError::ApiBaseUrl);
        }
        let api_key = match (set("TWILIO_API_KEY")?, set("TWILIO_API_SECRET")?) {
            (Some(sid), Some(secret)) if crate::sid::is_sid(&sid, "SK") => {
                Some((sid, Secret(secret)))
            }
            (None, None) => None,
            _ => return Err(ConfigError::ApiKey),
        };
        let mode = match set("ANSWER_MODE")?.as_deref() {
            None | Some("conference") => AnswerMode::Conference,
            Some("annotate") => AnswerMode::Annotate,
            Some(_) => return Err(ConfigError::AnswerMode),
        };
        let enforcement = match set("ENFORCEMENT")?.as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(_) => return Err(ConfigError::Enforcement),
        };
        let public_events_url = set("PUBLIC_EVENTS_URL")?;
        if public_events_url
            .as_deref()
            .is_some_and(|url| !is_public_url(url))
        {
            return Err(ConfigError::PublicEventsUrl);
        }
        let voice_api_base_url = set("TWILIO_VOICE_API_BASE_URL")?
            .unwrap_or_else(|| DEFAULT_VOICE_API_BASE_URL.to_owned());
        if !is_public_url(&voice_api_base_url) || voice_api_base_url.contains('?') {
            return Err(ConfigError::VoiceApiBaseUrl);
        }
        let metrics_namespace = set("METRICS_NAMESPACE")?;
        if metrics_namespace
            .as_deref()
            .is_some_and(|name| !is_metrics_namespace(name))
        {
            return Err(ConfigError::MetricsNamespace);
        }
        let ledger_table = set("LEDGER_TABLE")?;
        let is_table_name = |name: &str| {
            (3..=255).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        if ledger_table.as_deref().is_some_and(|t| !is_table_name(t)) {
            return Err(ConfigError::LedgerTable);
        }
        let ledger_retention_days = match set("LEDGER_RETENTION_DAYS")? {
            Some(text) => match text.parse::<u32>() {
                Ok(days @ 1..=3650) => days,
                _ => return Err(ConfigError::LedgerRetention),
            },
            None => DEFAULT_LEDGER_RETENTION_DAYS,
        };
        let recordings_buckets = match set("RECORDINGS_BUCKETS")? {
            Some(text) => {
                crate::media::parse_buckets(&text).map_err(ConfigError::RecordingsBuckets)?
            }
            None => Vec::new(),
        };
        Ok(Config {
            rules,
            ttl,
            fail_policy,
            tokens,
            enforce_signatures,
            account_sid,
            public_url,
            api_base_url,
            api_key,
            mode,
            enforcement,
            public_events_url,
            voice_api_base_url,
            metrics_namespace,
            ledger_table,
            ledger_retention_days,
            recordings_buckets,
        })
    }

    pub fn from_process_env() -> Result<Config, ConfigError> {
        Config::from_env(|name| std::env::var(name).ok())
    }
}

/// A namespace CloudWatch takes (its documented characters and length) that is not one of
/// AWS's own.
fn is_metrics_namespace(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && !name.starts_with("AWS/")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c))
}

fn is_public_url(text: &str) -> bool {
    let authority = text.split_once("://").map(|(_, rest)| rest);
    authority.is_some_and(|a| !a.starts_with('/') && !a.contains(char::is_whitespace))
        && url::Url::parse(text).is_ok_and(|url| {
            matches!(url.scheme(), "http" | "https")
                && url.host().is_some()
                && url.fragment().is_none()
        })
}

/// `ON_RULES_UNAVAILABLE`: what a call gets when good rules cannot decide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailPolicy {
    #[default]
    DoNotRecord,
    Record,
}

impl FailPolicy {
    pub fn parse(text: &str) -> Option<FailPolicy> {
        match text {
            "do-not-record" => Some(FailPolicy::DoNotRecord),
            "record" => Some(FailPolicy::Record),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailPolicy::DoNotRecord => "do-not-record",
            FailPolicy::Record => "record",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_env(|name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.rules, RulesLocation::Unset);
        assert_eq!(c.ttl, Duration::from_secs(60));
        assert_eq!(c.fail_policy, FailPolicy::DoNotRecord);
        assert_eq!(c.tokens, TokenLocation::Unset);
        assert!(c.enforce_signatures);
        assert_eq!((c.account_sid, c.public_url), (None, None));
    }

    #[test]
    fn recordings_buckets() {
        assert!(config(&[]).unwrap().recordings_buckets.is_empty());
        let c = config(&[("RECORDINGS_BUCKETS", "acme-recordings, acme.backup,")]).unwrap();
        assert_eq!(c.recordings_buckets, ["acme-recordings", "acme.backup"]);
        let bad = config(&[("RECORDINGS_BUCKETS", "acme-recordings,Acme_Media")]);
        let message = bad.expect_err("refused").to_string();
        assert!(
            message.starts_with("RECORDINGS_BUCKETS: \"Acme_Media\" is not an S3 bucket name"),
            "{message}"
        );
    }

    #[test]
    fn ledger_settings() {
        let c = config(&[]).unwrap();
        assert_eq!((c.ledger_table, c.ledger_retention_days), (None, 400));
        let c = config(&[
            ("LEDGER_TABLE", "cr-ledger"),
            ("LEDGER_RETENTION_DAYS", "30"),
        ])
        .unwrap();
        assert_eq!(c.ledger_table.as_deref(), Some("cr-ledger"));
        assert_eq!(c.ledger_retention_days, 30);
        for bad in ["x", "a table", "t/../u", &"t".repeat(256)] {
            assert_eq!(
                config(&[("LEDGER_TABLE", bad)]),
                Err(ConfigError::LedgerTable),
                "{bad}"
            );
        }
        for bad in ["0", "-1", "3651", "1.5", "a year"] {
            assert_eq!(
                config(&[("LEDGER_RETENTION_DAYS", bad)]),
                Err(ConfigError::LedgerRetention),
                "{bad}"
            );
        }
    }

    #[test]
    fn enforcement_settings() {
        let c = config(&[]).unwrap();
        assert!(c.enforcement);
        assert_eq!(c.public_events_url, None);
        assert_eq!(c.voice_api_base_url, "https://api.twilio.com");
        let c = config(&[
            ("ENFORCEMENT", "off"),
            ("PUBLIC_EVENTS_URL", "https://calls.example.com/events"),
            ("TWILIO_VOICE_API_BASE_URL", "http://127.0.0.1:4010"),
        ])
        .unwrap();
        assert!(!c.enforcement);
        assert_eq!(
            c.public_events_url.as_deref(),
            Some("https://calls.example.com/events")
        );
        assert_eq!(c.voice_api_base_url, "http://127.0.0.1:4010");
        for (name, value, error) in [
            ("ENFORCEMENT", "yes", ConfigError::Enforcement),
            ("PUBLIC_EVENTS_URL", "/events", ConfigError::PublicEventsUrl),
            (
                "PUBLIC_EVENTS_URL",
                "https://h/events#x",
                ConfigError::PublicEventsUrl,
            ),
            (
                "TWILIO_VOICE_API_BASE_URL",
                "api.twilio.com",
                ConfigError::VoiceApiBaseUrl,
            ),
            (
                "TWILIO_VOICE_API_BASE_URL",
                "https://h/?a=1",
                ConfigError::VoiceApiBaseUrl,
            ),
        ] {
            assert_eq!(config(&[(name, value)]), Err(error), "{name}={value}");
        }
    }

    #[test]
    fn metrics_namespace() {
        assert_eq!(config(&[]).unwrap().metrics_namespace, None);
        for good in [
            "ConditionalRecording/prod-stack",
            "cr.staging_2#a: b",
            &"n".repeat(255),
        ] {
            let c = config(&[("METRICS_NAMESPACE", good)]).unwrap();
            assert_eq!(c.metrics_namespace.as_deref(), Some(good));
        }
        for bad in [
            "AWS/Lambda",
            "ns\nsplit",
            "ns\u{0}",
            "caf\u{e9}",
            "a,b",
            "{\"json\":1}",
            &"n".repeat(256),
        ] {
            assert_eq!(
                config(&[("METRICS_NAMESPACE", bad)]),
                Err(ConfigError::MetricsNamespace),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn signature_settings() {
        let c = config(&[
            ("TWILIO_AUTH_TOKEN", "secret-token"),
            ("TWILIO_SIGNATURE_VALIDATION", "off"),
            ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
            (
                "PUBLIC_URL",
                "https://calls.example.com/assignment?tenant=a%20b",
            ),
        ])
        .unwrap();
        assert_eq!(
            c.tokens,
            TokenLocation::Fixed(Secret("secret-token".into()))
        );
        assert!(
            !format!("{c:?}").contains("secret-token"),
            "a token never shows in Debug"
        );
        assert!(!c.enforce_signatures);
        assert_eq!(
            c.public_url.as_deref(),
            Some("https://calls.example.com/assignment?tenant=a%20b")
        );
        let c = config(&[
            ("TWILIO_AUTH_TOKEN", "t"),
            ("TWILIO_AUTH_TOKEN_PARAMETER", "/cr/token"),
        ])
        .unwrap();
        assert_eq!(
            c.tokens,
            TokenLocation::Parameter("/cr/token".into()),
            "the parameter wins"
        );
    }

    #[test]
    fn values() {
        let c = config(&[
            ("RULES_FILE", "r.json"),
            ("ON_RULES_UNAVAILABLE", "record"),
            ("RULES_CACHE_TTL_SECONDS", "5"),
        ])
        .unwrap();
        assert_eq!(c.rules, RulesLocation::File("r.json".into()));
        assert_eq!(c.fail_policy, FailPolicy::Record);
        assert_eq!(c.ttl, Duration::from_secs(5));
        let c = config(&[("RULES_FILE", "r.json"), ("RULES_PARAMETER", "/cr/rules")]).unwrap();
        assert_eq!(
            c.rules,
            RulesLocation::Parameter("/cr/rules".into()),
            "the parameter wins"
        );
    }

    #[test]
    fn faults() {
        assert_eq!(
            config(&[("ON_RULES_UNAVAILABLE", "yes")]),
            Err(ConfigError::FailPolicy)
        );
        assert_eq!(
            config(&[("RULES_FILE", " ")]).map(|c| c.rules),
            Ok(RulesLocation::Unset),
            "empty is unset"
        );
        assert_eq!(
            config(&[("TWILIO_SIGNATURE_VALIDATION", "no")]),
            Err(ConfigError::Validation)
        );
        assert_eq!(
            config(&[("TWILIO_ACCOUNT_SID", "AC1")]),
            Err(ConfigError::AccountSid)
        );
        for url in [
            "example.com/assignment",
            "ftp://h/a",
            "https://h/a#x",
            "https:///a",
        ] {
            assert_eq!(
                config(&[("PUBLIC_URL", url)]),
                Err(ConfigError::PublicUrl),
                "{url}"
            );
        }
        for ttl in ["0", "-1", "1.5", "x", "86401", "99999999999999999999"] {
            assert_eq!(
                config(&[("RULES_CACHE_TTL_SECONDS", ttl)]),
                Err(ConfigError::Ttl),
                "{ttl}"
            );
        }
    }
}
