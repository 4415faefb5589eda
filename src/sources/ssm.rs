//! SSM Parameter Store: one client, built once, with timeouts that keep an answer to
//! TaskRouter well inside its 5 seconds even when SSM hangs.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::http::Response;

use super::cache::{Fetch, Fetched};
use super::https::{RootsError, SdkClient};

/// Connecting to SSM (TCP and TLS) must finish within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// One attempt of GetParameter.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);
/// All attempts of one GetParameter, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_millis(2000);

/// Why the SSM client cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error(
        "{0} is set but empty, which the AWS SDK cannot use: unset it for the service's own endpoint, or give a URL"
    )]
    EmptyEndpoint(&'static str),
    #[error(transparent)]
    Roots(#[from] RootsError),
    #[error("the AWS SDK's configuration could not be loaded")]
    Unloaded,
}

/// Why a read of a parameter failed, in one line that is safe to log: never the answer
/// itself (see [`cause`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsmError {
    /// SSM answered with an error: its code, and its message when it gave one.
    #[error("SSM answered {code}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Answered {
        code: String,
        message: Option<String>,
    },
    /// An answer the SDK could not read: never quoted, it may hold a decrypted value.
    #[error("SSM's answer (HTTP {0}) could not be read")]
    Unreadable(u16),
    /// No answer: a timeout, or a failure to connect or send, with its causes.
    #[error("{0}")]
    Transport(String),
    #[error("the answer has no parameter")]
    NoParameter,
    #[error("the parameter has no value")]
    NoValue,
    #[error("ParameterNotFound: SSM lists the name (or its version or label) as invalid")]
    Invalid,
}

/// Builds the SSM client once, on the HTTPS stack the TaskRouter client uses too.
/// `AWS_ENDPOINT_URL_SSM`, `AWS_REGION` and the usual credential variables apply.
pub async fn client() -> Result<aws_sdk_ssm::Client, ClientError> {
    Ok(aws_sdk_ssm::Client::new(&sdk_config().await?))
}

/// The AWS SDK's configuration, shared by every AWS client (SSM, the ledger's DynamoDB):
/// the service's HTTPS stack, its timeouts and two attempts. Endpoint overrides
/// (`AWS_ENDPOINT_URL_SSM`, `_DYNAMODB`, ...), `AWS_REGION` and the usual credential
/// variables apply.
pub async fn sdk_config() -> Result<aws_config::SdkConfig, ClientError> {
    // The SDK reads these itself, and panics on an empty one (a blank override, say).
    for name in [
        "AWS_ENDPOINT_URL_SSM",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL",
    ] {
        if std::env::var_os(name).is_some_and(|value| value.to_string_lossy().trim().is_empty()) {
            return Err(ClientError::EmptyEndpoint(name));
        }
    }
    Ok(aws_config::defaults(BehaviorVersion::latest())
        .http_client(SdkClient::new()?)
        .timeout_config(timeouts(
            CONNECT_TIMEOUT,
            ATTEMPT_TIMEOUT,
            OPERATION_TIMEOUT,
        ))
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .load()
        .await)
}

/// The SDK's timeouts: to connect, for one attempt, and for all attempts of a call.
pub(super) fn timeouts(connect: Duration, attempt: Duration, operation: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(connect)
        .operation_attempt_timeout(attempt)
        .operation_timeout(operation)
        .build()
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
    type Error = SsmError;
    async fn fetch(&self) -> Result<Fetched, SsmError> {
        let output = self
            .client
            .get_parameter()
            .name(&self.name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| cause(&e))?;
        fetched(output.parameter().ok_or(SsmError::NoParameter)?)
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// Every version GetParameterHistory gives, decrypted, over at most [`HISTORY_PAGES`]
    /// pages. None for a name that pins a version or label: the pin is the operator's choice.
    async fn history(&self) -> Result<Vec<Fetched>, SsmError> {
        if pins_a_version(&self.name) {
            return Ok(Vec::new());
        }
        let mut versions = Vec::new();
        let mut next_token = None;
        for _ in 0..HISTORY_PAGES {
            let page = self
                .client
                .get_parameter_history()
                .name(&self.name)
                .with_decryption(true)
                .max_results(HISTORY_PAGE_SIZE)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|e| cause(&e))?;
            versions.extend(page.parameters().iter().filter_map(|version| {
                Some(Fetched {
                    text: version.value()?.to_owned(),
                    version: Some(version.version()),
                })
            }));
            next_token = page
                .next_token()
                .filter(|token| !token.is_empty())
                .map(str::to_owned);
            if next_token.is_none() {
                break;
            }
        }
        Ok(versions)
    }
}

/// Why one GetParameters call for several parameters gave nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TogetherFailed {
    /// SSM did not answer (timeout, no connection): reading each parameter alone would not
    /// do better now.
    Unreachable(SsmError),
    /// SSM answered with an error (a name it refuses, a throttle): reading each alone tells
    /// which parameter is at fault.
    Refused(SsmError),
}

/// Reads several parameters (at most 10, SSM's limit) in one GetParameters call, with
/// decryption: start-up reads the rules and the auth tokens so, in one round trip and over
/// one connection instead of one of each per parameter. The answer has an entry per name, in
/// order: what a GetParameter of that name would have given, or `None` when the answer
/// cannot be matched to the name (read it alone then).
pub async fn get_together(
    client: &aws_sdk_ssm::Client,
    names: &[&str],
) -> Result<Vec<Option<Result<Fetched, SsmError>>>, TogetherFailed> {
    let mut request = client.get_parameters().with_decryption(true);
    for name in names {
        request = request.names(*name);
    }
    let output = request.send().await.map_err(|e| {
        let cause = cause(&e);
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
                return Some(Err(SsmError::Invalid));
            }
            let parameter = output.parameters().iter().find(|p| answers_to(p, name))?;
            Some(fetched(parameter))
        })
        .collect())
}

/// A parameter's value and version, as the cache takes them.
fn fetched(parameter: &aws_sdk_ssm::types::Parameter) -> Result<Fetched, SsmError> {
    let text = parameter.value().ok_or(SsmError::NoValue)?;
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
/// Why an SSM call failed, in one line that is safe to log: the code and message SSM
/// answered with, or what went wrong in sending the request. Never the answer itself: an
/// answer the SDK could not read may hold a decrypted SecureString, and the SDK's own report
/// (`DisplayErrorContext`) prints the raw response, body included.
pub(super) fn cause<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: &SdkError<E, Response>,
) -> SsmError {
    match error {
        SdkError::ServiceError(context) => SsmError::Answered {
            code: one_line(context.err().code().unwrap_or("an error without a code")),
            message: context.err().message().map(one_line),
        },
        SdkError::ResponseError(context) => SsmError::Unreadable(context.raw().status().as_u16()),
        // Timeouts, failures to connect or send, requests that could not be built: made
        // before any answer, so their descriptions hold none.
        other => SsmError::Transport(one_line(&super::chain::error_chain(other))),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// GetParameterHistory is read in pages of this many versions (SSM's maximum), at most this
/// many pages: SSM keeps a parameter's last 100 versions, so two pages hold them all and the
/// bound only stops a store that keeps handing out pages.
pub const HISTORY_PAGE_SIZE: i32 = 50;
pub const HISTORY_PAGES: usize = 4;

/// Whether a parameter name ends in a `:version` or `:label` selector. Parameter names hold
/// no `:`, so one after the last `/` (an ARN's own colons come before it) is a selector.
fn pins_a_version(name: &str) -> bool {
    name.rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ssm::types::Parameter;

    /// An SSM client for `endpoint`, on the service's HTTPS stack, with test credentials.
    fn client_for(endpoint: &str) -> aws_sdk_ssm::Client {
        let config = aws_sdk_ssm::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_ssm::config::Credentials::for_tests())
            .endpoint_url(endpoint)
            .http_client(SdkClient::new().expect("TLS settings"))
            .retry_config(RetryConfig::disabled())
            .build();
        aws_sdk_ssm::Client::from_conf(config)
    }

    /// What a fetch reports when SSM answers `status` with `body` under a Content-Length of
    /// `length`.
    async fn cause_of(status: &str, body: &str, length: usize) -> String {
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {length}\r\n\r\n{body}"
        );
        let endpoint = super::super::https::tests::one_shot(Some(answer.into_bytes().leak())).await;
        crate::sources::ssm::Parameter::new(client_for(&endpoint), "/cr/token")
            .fetch()
            .await
            .expect_err("a failure")
            .to_string()
    }

    #[tokio::test]
    async fn an_answer_the_sdk_cannot_read_is_never_quoted() {
        const SECRET: &str = "SUPERSECRETTOKEN0123";
        let unreadable = [
            // A field of the wrong type.
            format!(
                r#"{{"Parameter":{{"Name":"/cr/token","Type":"SecureString","Value":"{SECRET}","Version":"seven"}}}}"#
            ),
            // Not JSON at all.
            format!("<html>{SECRET}</html>"),
        ];
        for body in unreadable {
            let cause = cause_of("200 OK", &body, body.len()).await;
            assert_eq!(cause, "SSM's answer (HTTP 200) could not be read");
        }
        // Cut short by its Content-Length.
        let body = format!(r#"{{"Parameter":{{"Value":"{SECRET}","Version":1}}}}"#);
        let cause = cause_of("200 OK", &body, body.len() + 40).await;
        assert!(!cause.contains(SECRET), "{cause}");
    }

    #[tokio::test]
    async fn an_error_ssm_answers_is_named_by_its_code_and_message() {
        let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
        let cause = cause_of("400 Bad Request", body, body.len()).await;
        assert_eq!(cause, "SSM answered ThrottlingException: Rate exceeded");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        drop(listener);
        let cause = crate::sources::ssm::Parameter::new(client_for(&endpoint), "/cr/rules")
            .fetch()
            .await
            .expect_err("refused")
            .to_string();
        assert!(cause.starts_with("dispatch failure: io error"), "{cause}");
        assert!(cause.contains("onnection refused"), "{cause}");
    }

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
    fn a_selector_is_told_from_an_arn() {
        assert!(!pins_a_version("/cr/rules"));
        assert!(!pins_a_version("rules"));
        assert!(!pins_a_version(ARN));
        assert!(pins_a_version("/cr/rules:3"));
        assert!(pins_a_version("rules:live"));
        assert!(pins_a_version(&format!("{ARN}:3")));
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
