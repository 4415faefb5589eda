//! SSM Parameter Store: one client, built once, with timeouts that keep an answer to
//! TaskRouter well inside its 5 seconds even when SSM hangs.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ssm::error::{DisplayErrorContext, SdkError};

use super::cache::{Fetch, Fetched};
use super::https::SdkClient;

/// Connecting to SSM (TCP and TLS) must finish within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// One attempt of GetParameter.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);
/// All attempts of one GetParameter, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_millis(2000);

/// Builds the SSM client once, on the HTTPS stack the TaskRouter client uses too.
/// `AWS_ENDPOINT_URL_SSM`, `AWS_REGION` and the usual credential variables apply.
pub async fn client() -> Result<aws_sdk_ssm::Client, String> {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(SdkClient::new()?)
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
    Ok(aws_sdk_ssm::Client::new(&config))
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
        fetched(output.parameter().ok_or("the answer has no parameter")?)
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// Why one GetParameters call for several parameters gave nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TogetherFailed {
    /// SSM did not answer (timeout, no connection): reading each parameter alone would not
    /// do better now. The cause is one line, safe to log.
    Unreachable(String),
    /// SSM answered with an error (a name it refuses, a throttle): reading each alone tells
    /// which parameter is at fault.
    Refused(String),
}

/// Reads several parameters (at most 10, SSM's limit) in one GetParameters call, with
/// decryption: start-up reads the rules and the auth tokens so, in one round trip and over
/// one connection instead of one of each per parameter. The answer has an entry per name, in
/// order: what a GetParameter of that name would have given, or `None` when the answer
/// cannot be matched to the name (read it alone then).
pub async fn get_together(
    client: &aws_sdk_ssm::Client,
    names: &[&str],
) -> Result<Vec<Option<Result<Fetched, String>>>, TogetherFailed> {
    let mut request = client.get_parameters().with_decryption(true);
    for name in names {
        request = request.names(*name);
    }
    let output = request.send().await.map_err(|e| {
        let cause = one_line(&DisplayErrorContext(&e).to_string());
        match e {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
                TogetherFailed::Unreachable(cause)
            }
            _ => TogetherFailed::Refused(cause),
        }
    })?;
    Ok(names
        .iter()
        .map(|name| {
            if output.invalid_parameters().iter().any(|n| n == name) {
                return Some(Err(
                    "ParameterNotFound: SSM lists the name (or its version or label) as invalid"
                        .to_owned(),
                ));
            }
            let parameter = output.parameters().iter().find(|p| answers_to(p, name))?;
            Some(fetched(parameter))
        })
        .collect())
}

/// A parameter's value and version, as the cache takes them.
fn fetched(parameter: &aws_sdk_ssm::types::Parameter) -> Result<Fetched, String> {
    let text = parameter.value().ok_or("the parameter has no value")?;
    Ok(Fetched {
        text: text.to_owned(),
        version: Some(parameter.version()),
    })
}

/// Whether a parameter in a GetParameters answer is the one asked for by `name`: by name or
/// ARN, followed by the `:version` or `:label` selector when one was asked for.
fn answers_to(parameter: &aws_sdk_ssm::types::Parameter, name: &str) -> bool {
    [parameter.name(), parameter.arn()]
        .into_iter()
        .flatten()
        .filter_map(|id| name.strip_prefix(id))
        .any(|asked| match parameter.selector() {
            Some(selector) => asked == selector,
            // An answer without its selector (SSM emulators leave it out) can still be
            // checked against a version asked for, though not against a label.
            None => {
                asked.is_empty()
                    || asked.strip_prefix(':').and_then(|v| v.parse().ok())
                        == Some(parameter.version())
            }
        })
}

/// Error chains can span lines; a log field should not.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ssm::types::Parameter;

    const ARN: &str = "arn:aws:ssm:us-east-1:123456789012:parameter/cr/rules";

    fn answered(selector: Option<&str>, version: i64) -> Parameter {
        Parameter::builder()
            .name("/cr/rules")
            .arn(ARN)
            .set_selector(selector.map(str::to_owned))
            .version(version)
            .value("{}")
            .build()
    }

    #[test]
    fn an_answer_is_matched_to_the_name_asked_for() {
        let plain = answered(None, 3);
        assert!(answers_to(&plain, "/cr/rules"));
        assert!(answers_to(&plain, ARN));
        assert!(!answers_to(&plain, "/cr/rule"));
        assert!(!answers_to(&plain, "/cr/rules2"));
        assert!(!answers_to(&plain, "/cr"));

        // A pinned version, with or without the selector in the answer.
        assert!(answers_to(&answered(Some(":3"), 3), "/cr/rules:3"));
        assert!(answers_to(&answered(None, 3), "/cr/rules:3"));
        assert!(answers_to(&answered(None, 3), &format!("{ARN}:3")));
        assert!(!answers_to(&answered(None, 4), "/cr/rules:3"));
        assert!(!answers_to(&answered(Some(":3"), 3), "/cr/rules"));

        // A label can be checked only when the answer names it.
        assert!(answers_to(&answered(Some(":live"), 7), "/cr/rules:live"));
        assert!(!answers_to(&answered(None, 7), "/cr/rules:live"));
        assert!(!answers_to(&answered(Some(":old"), 7), "/cr/rules:live"));
    }
}
