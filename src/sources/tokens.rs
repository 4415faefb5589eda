//! Twilio auth tokens, for signature validation: from an SSM SecureString (several tokens,
//! one per line, so a rotation can overlap) or fixed at start.

use std::fmt;
use std::sync::Arc;

use super::cache::{Cached, Rejected};
use super::ssm;

/// A token document with no token in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no token: the parameter must hold one auth token per line")]
pub struct NoToken;

/// The tokens in force. Its `Debug` never shows a token.
pub struct AuthTokens(Vec<String>);

impl AuthTokens {
    /// Parses one token per line; blank lines and surrounding space are ignored.
    pub fn parse(text: &str) -> Result<AuthTokens, NoToken> {
        let tokens: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect();
        if tokens.is_empty() {
            return Err(NoToken);
        }
        Ok(AuthTokens(tokens))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Debug for AuthTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthTokens({} redacted)", self.0.len())
    }
}

fn parse_parameter(text: &str, _version: Option<i64>) -> Result<AuthTokens, Rejected> {
    Ok(AuthTokens::parse(text)?)
}

/// Where tokens come from.
pub enum TokenSource {
    Fixed(Arc<AuthTokens>),
    Parameter(Cached<AuthTokens, ssm::Parameter>),
}

impl TokenSource {
    pub fn parameter(parameter: ssm::Parameter, ttl: std::time::Duration) -> TokenSource {
        TokenSource::Parameter(Cached::new(
            parameter,
            parse_parameter,
            "auth tokens",
            ttl,
            super::cache::SystemClock,
        ))
    }

    /// The tokens in force; `None` when a parameter has never been read successfully.
    pub async fn current(&self) -> Option<Arc<AuthTokens>> {
        match self {
            TokenSource::Fixed(tokens) => Some(Arc::clone(tokens)),
            TokenSource::Parameter(cache) => cache.current().await,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            TokenSource::Fixed(_) => "TWILIO_AUTH_TOKEN".into(),
            TokenSource::Parameter(cache) => format!("SSM parameter {}", cache.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_token_per_line_and_never_shown() {
        let tokens = AuthTokens::parse(" old0123 \n\nnew4567\r\n").unwrap();
        assert_eq!(tokens.as_slice(), ["old0123", "new4567"]);
        assert_eq!(format!("{tokens:?}"), "AuthTokens(2 redacted)");
        assert!(AuthTokens::parse(" \n\t\n").is_err());
    }
}
