//! Twilio auth tokens, for signature validation: from an SSM SecureString (several tokens,
//! one per line, so a rotation can overlap) or fixed at start.

use std::sync::Arc;

use super::cache::{Cached, Rejected};
use super::ssm;
pub use crate::ports::{AuthTokens, NoToken, TokenSource};

fn parse_parameter(text: &str, _version: Option<i64>) -> Result<AuthTokens, Rejected> {
    Ok(AuthTokens::parse(text)?)
}

/// The token source chosen at start.
pub enum AnyTokens {
    /// `TWILIO_AUTH_TOKEN`, fixed for the life of the process.
    Fixed(Arc<AuthTokens>),
    /// An SSM SecureString, through the cache.
    Parameter(Cached<AuthTokens, ssm::Parameter>),
}

impl AnyTokens {
    pub fn parameter(parameter: ssm::Parameter, ttl: std::time::Duration) -> AnyTokens {
        AnyTokens::Parameter(Cached::new(
            parameter,
            parse_parameter,
            "auth tokens",
            ttl,
            super::cache::SystemClock,
        ))
    }
}

impl TokenSource for AnyTokens {
    async fn current(&self) -> Option<Arc<AuthTokens>> {
        match self {
            AnyTokens::Fixed(tokens) => Some(Arc::clone(tokens)),
            AnyTokens::Parameter(cache) => cache.current().await,
        }
    }

    fn describe(&self) -> String {
        match self {
            AnyTokens::Fixed(_) => "TWILIO_AUTH_TOKEN".into(),
            AnyTokens::Parameter(cache) => format!("SSM parameter {}", cache.name()),
        }
    }
}
