//! Where rules come from. The only I/O in the crate lives under this module.

pub mod cache;
mod chain;
pub mod https;
pub mod ledger_table;
pub mod media_store;
pub mod publishing;
pub mod ssm;
pub mod taskrouter_api;
pub mod tokens;
pub mod voice_api;
pub mod voice_archive;

use std::sync::Arc;

pub use crate::ports::{LoadedRules, RulesSource};
use crate::rules::{Rules, RulesError};

use cache::Cached;

/// Rules fixed for the life of the process: a local file or the embedded example.
#[derive(Debug, Clone)]
pub struct StaticRules {
    rules: Arc<LoadedRules>,
    origin: String,
    loaded_at: std::time::Instant,
}

impl StaticRules {
    pub fn new(rules: Rules, origin: impl Into<String>) -> StaticRules {
        StaticRules {
            rules: Arc::new(LoadedRules {
                rules,
                version: None,
            }),
            origin: origin.into(),
            loaded_at: std::time::Instant::now(),
        }
    }

    /// Reads, validates and compiles a rules file.
    pub fn from_file(path: &std::path::Path) -> Result<StaticRules, FileRulesError> {
        let text = read_rules_file(path)?;
        let rules = Rules::from_json(&text).map_err(|error| FileRulesError::Invalid {
            path: path.display().to_string(),
            error,
        })?;
        Ok(StaticRules::new(rules, format!("file {}", path.display())))
    }
}

impl RulesSource for StaticRules {
    async fn current(&self) -> Option<Arc<LoadedRules>> {
        Some(Arc::clone(&self.rules))
    }

    fn describe(&self) -> String {
        self.origin.clone()
    }

    fn age(&self) -> Option<std::time::Duration> {
        Some(self.loaded_at.elapsed())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FileRulesError {
    #[error("{path}: cannot read: {error}")]
    Unreadable { path: String, error: std::io::Error },
    #[error("{path}: larger than {limit} bytes", limit = crate::rules::MAX_DOCUMENT_BYTES)]
    TooLarge { path: String },
    #[error("{path}: {error}")]
    Invalid { path: String, error: RulesError },
}

/// Reads a rules file without reading more than a document may hold.
pub fn read_rules_file(path: &std::path::Path) -> Result<String, FileRulesError> {
    let unreadable = |error| FileRulesError::Unreadable {
        path: shown(path),
        error,
    };
    let bytes = read_at_most(path, crate::rules::MAX_DOCUMENT_BYTES as u64)
        .map_err(unreadable)?
        .ok_or_else(|| FileRulesError::TooLarge { path: shown(path) })?;
    String::from_utf8(bytes).map_err(|_| {
        unreadable(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ))
    })
}

/// `-`, as command-line tools take it: standard input.
pub fn is_standard_input(path: &std::path::Path) -> bool {
    path.as_os_str() == "-"
}

/// A path as messages name it (`standard input` for `-`).
pub fn shown(path: &std::path::Path) -> String {
    if is_standard_input(path) {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    }
}

/// A file's bytes (standard input's for `-`), or `None` when it holds more than `limit`; no
/// more than `limit + 1` bytes are read, however long the file (or `/dev/zero`) is.
pub fn read_at_most(path: &std::path::Path, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    if is_standard_input(path) {
        std::io::stdin()
            .lock()
            .take(limit + 1)
            .read_to_end(&mut bytes)?;
    } else {
        std::fs::File::open(path)?
            .take(limit + 1)
            .read_to_end(&mut bytes)?;
    }
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// Rules read from an SSM parameter through the cache.
pub type ParameterRules = Cached<LoadedRules, ssm::Parameter>;

/// Parses a fetched rules document.
pub fn parse_rules(text: &str, version: Option<i64>) -> Result<LoadedRules, cache::Rejected> {
    let rules = Rules::from_json(text)?;
    Ok(LoadedRules { rules, version })
}

impl RulesSource for ParameterRules {
    async fn current(&self) -> Option<Arc<LoadedRules>> {
        Cached::current(self).await
    }

    fn describe(&self) -> String {
        format!("SSM parameter {}", self.name())
    }

    fn age(&self) -> Option<std::time::Duration> {
        Cached::age(self)
    }
}

/// The rules source chosen at start.
pub enum AnyRules {
    Static(StaticRules),
    Parameter(ParameterRules),
}

impl RulesSource for AnyRules {
    async fn current(&self) -> Option<Arc<LoadedRules>> {
        match self {
            AnyRules::Static(source) => source.current().await,
            AnyRules::Parameter(source) => Cached::current(source).await,
        }
    }

    fn describe(&self) -> String {
        match self {
            AnyRules::Static(source) => source.describe(),
            AnyRules::Parameter(source) => source.describe(),
        }
    }

    fn age(&self) -> Option<std::time::Duration> {
        match self {
            AnyRules::Static(source) => source.age(),
            AnyRules::Parameter(source) => Cached::age(source),
        }
    }
}
