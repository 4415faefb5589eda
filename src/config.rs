//! Configuration from the environment (SPEC section 5), read once at start.

use std::path::PathBuf;

use crate::rules::FailPolicy;

/// Where rules come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulesLocation {
    File(PathBuf),
    /// No source configured: `serve` uses the embedded example; Lambda mode refuses to start.
    Unset,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub rules: RulesLocation,
    pub fail_policy: FailPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("ON_RULES_UNAVAILABLE must be do-not-record or record")]
    FailPolicy,
    #[error("{0} is set but empty")]
    Empty(&'static str),
}

impl Config {
    /// Reads the configuration through `var` (the process environment in production).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let set = |name: &'static str| -> Result<Option<String>, ConfigError> {
            match var(name) {
                Some(value) if value.trim().is_empty() => Err(ConfigError::Empty(name)),
                other => Ok(other),
            }
        };
        let rules = match set("RULES_FILE")? {
            Some(path) => RulesLocation::File(PathBuf::from(path)),
            None => RulesLocation::Unset,
        };
        let fail_policy = match set("ON_RULES_UNAVAILABLE")? {
            Some(text) => FailPolicy::parse(text.trim()).ok_or(ConfigError::FailPolicy)?,
            None => FailPolicy::default(),
        };
        Ok(Config { rules, fail_policy })
    }

    pub fn from_process_env() -> Result<Config, ConfigError> {
        Config::from_env(|name| std::env::var(name).ok())
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
        assert_eq!(c.fail_policy, FailPolicy::DoNotRecord);
    }

    #[test]
    fn values_and_faults() {
        let c = config(&[("RULES_FILE", "r.json"), ("ON_RULES_UNAVAILABLE", "record")]).unwrap();
        assert_eq!(c.rules, RulesLocation::File("r.json".into()));
        assert_eq!(c.fail_policy, FailPolicy::Record);
        assert_eq!(
            config(&[("ON_RULES_UNAVAILABLE", "yes")]),
            Err(ConfigError::FailPolicy)
        );
        assert_eq!(
            config(&[("RULES_FILE", " ")]),
            Err(ConfigError::Empty("RULES_FILE"))
        );
    }
}
