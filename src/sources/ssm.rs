//! SSM Parameter Store: one client, built once, with timeouts that keep an answer to
//! TaskRouter well inside its 5 seconds even when SSM hangs.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ssm::error::DisplayErrorContext;

use super::cache::{Fetch, Fetched};

/// Connecting to SSM (TCP and TLS) must finish within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// One attempt of GetParameter.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);
/// All attempts of one GetParameter, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_millis(2000);

/// Builds the SSM client once. `AWS_ENDPOINT_URL_SSM`, `AWS_REGION` and the usual credential
/// variables apply.
pub async fn client() -> aws_sdk_ssm::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .load()
        .await;
    aws_sdk_ssm::Client::new(&config)
}

/// One parameter, read with decryption (String or SecureString).
#[derive(Debug, Clone)]
pub struct Parameter {
    client: aws_sdk_ssm::Client,
    name: String,
}

impl Parameter {
    pub fn new(client: aws_sdk_ssm::Client, name: impl Into<String>) -> Parameter {
        Parameter {
            client,
            name: name.into(),
        }
    }
}

impl Fetch for Parameter {
    async fn fetch(&self) -> Result<Fetched, String> {
        let output = self
            .client
            .get_parameter()
            .name(&self.name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| one_line(&DisplayErrorContext(&e).to_string()))?;
        let parameter = output.parameter().ok_or("the answer has no parameter")?;
        let text = parameter.value().ok_or("the parameter has no value")?;
        Ok(Fetched {
            text: text.to_owned(),
            version: Some(parameter.version()),
        })
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// Error chains can span lines; a log field should not.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
