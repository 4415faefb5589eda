//! The rules parameter as an administrator publishes it: what is in force (version, type,
//! KMS key, tier), and one write of a new version that refuses to overwrite a version it
//! has not seen. SSM has no compare-and-swap, so the write is bracketed: the version is read
//! again just before PutParameter, a new parameter is created with `Overwrite=false`, and
//! the version PutParameter returns must be the one read plus one. PutParameter is sent
//! once, never retried: a retry after a lost answer would write a second version.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_sdk_ssm::error::SdkError;
use aws_sdk_ssm::types::{ParameterStringFilter, ParameterTier, ParameterType};
use aws_smithy_runtime_api::http::Response;

use super::ssm::{ClientError, SsmError, cause};
use crate::publish::Tier;

/// An administrator waits longer than TaskRouter does: SSM far away, KMS behind it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Reads are retried (they change nothing); PutParameter is not.
const READ_ATTEMPTS: u32 = 3;
/// DescribeParameters may answer a filtered request with empty pages and a NextToken.
const MAX_DESCRIBE_PAGES: usize = 20;

/// The service's SSM client (same region, endpoint, credentials and HTTPS stack), with an
/// administrator's timeouts and retries.
pub async fn admin_client() -> Result<aws_sdk_ssm::Client, ClientError> {
    let service = super::ssm::client().await?;
    let config = service
        .config()
        .to_builder()
        .timeout_config(super::ssm::timeouts(
            CONNECT_TIMEOUT,
            ATTEMPT_TIMEOUT,
            OPERATION_TIMEOUT,
        ))
        .retry_config(RetryConfig::standard().with_max_attempts(READ_ATTEMPTS))
        .build();
    Ok(aws_sdk_ssm::Client::from_conf(config))
}

/// The kind of value a rules parameter holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    String,
    /// Encrypted with this KMS key (as SSM names it: `alias/aws/ssm`, a key ID or an ARN).
    SecureString {
        key_id: Option<String>,
    },
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::String => "String",
            Kind::SecureString { .. } => "SecureString",
        }
    }
}

/// The version in force and what a new version must keep.
#[derive(Debug, Clone)]
pub struct InForce {
    pub version: i64,
    pub kind: Kind,
    pub tier: Tier,
    /// The document, when it was asked for (decrypted).
    pub text: Option<String>,
    description: Option<String>,
    allowed_pattern: Option<String>,
}

/// What went wrong, in one line for an administrator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("cannot read {name}: {cause}")]
    Read { name: String, cause: SsmError },
    #[error(
        "{name} is a {kind} parameter; rules live in a String or SecureString parameter: publish under another name"
    )]
    WrongType { name: String, kind: String },
    #[error(
        "concurrent publish: {name} moved from {} to {} while this publish was under way; nothing was written: publish again to review the change on top of the new version",
        describe_version(*read), describe_version(*now)
    )]
    Moved {
        name: String,
        read: Option<i64>,
        now: Option<i64>,
    },
    #[error("cannot write {name}: {cause}; nothing was written")]
    Refused { name: String, cause: SsmError },
    #[error(
        "concurrent publish: {name} was written by someone else while this publish was under way ({cause}); nothing was written: publish again"
    )]
    Contended { name: String, cause: SsmError },
    #[error(
        "PutParameter on {name} got no answer ({cause}), so it may or may not have written; {now}: read it before publishing again"
    )]
    Unknown {
        name: String,
        cause: SsmError,
        now: String,
    },
    #[error(
        "concurrent publish: this document was written as version {written} of {name}, but version {} was expected: another version was written between the check and the write and is now overwritten; compare `aws ssm get-parameter-history --name {name}` and publish again if need be",
        *read + 1
    )]
    Overtaken {
        name: String,
        read: i64,
        written: i64,
    },
}

fn describe_version(version: Option<i64>) -> String {
    match version {
        Some(version) => format!("version {version}"),
        None => "no parameter".into(),
    }
}

/// The parameter's version in force, with its kind and tier; `None` when it does not exist.
/// The document itself is read (with decryption) only when `with_text`: a SecureString's
/// needs `kms:Decrypt`, which publishing otherwise does not.
pub async fn read(
    client: &aws_sdk_ssm::Client,
    name: &str,
    with_text: bool,
) -> Result<Option<InForce>, PublishError> {
    let read_error = |cause| PublishError::Read {
        name: name.to_owned(),
        cause,
    };
    let parameter = match client
        .get_parameter()
        .name(name)
        .with_decryption(with_text)
        .send()
        .await
    {
        Ok(output) => output.parameter,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(read_error(cause(&e))),
    };
    let parameter = parameter.ok_or(read_error(SsmError::NoParameter))?;
    let metadata = describe(client, name).await.map_err(read_error)?;
    let metadata = match metadata {
        Some(metadata) if metadata.version() == parameter.version() => metadata,
        // Gone or changed between the two reads.
        other => {
            return Err(PublishError::Moved {
                name: name.to_owned(),
                read: Some(parameter.version()),
                now: other.map(|m| m.version()),
            });
        }
    };
    let kind = match parameter.r#type() {
        Some(ParameterType::String) => Kind::String,
        Some(ParameterType::SecureString) => Kind::SecureString {
            key_id: metadata.key_id().map(str::to_owned),
        },
        other => {
            return Err(PublishError::WrongType {
                name: name.to_owned(),
                kind: other.map_or("untyped".into(), |t| t.as_str().to_owned()),
            });
        }
    };
    let text = match (with_text, parameter.value) {
        (false, _) => None,
        (true, Some(text)) => Some(text),
        (true, None) => return Err(read_error(SsmError::NoValue)),
    };
    Ok(Some(InForce {
        version: parameter.version,
        kind,
        // Intelligent-Tiering is a way of asking, not a tier a parameter has; a tier SSM
        // adds later is treated as the largest.
        tier: match metadata.tier() {
            Some(ParameterTier::Standard) | None => Tier::Standard,
            Some(_) => Tier::Advanced,
        },
        text,
        description: metadata.description().map(str::to_owned),
        allowed_pattern: metadata.allowed_pattern().map(str::to_owned),
    }))
}

/// The parameter's metadata (tier, KMS key), found by its exact name.
async fn describe(
    client: &aws_sdk_ssm::Client,
    name: &str,
) -> Result<Option<aws_sdk_ssm::types::ParameterMetadata>, SsmError> {
    let filter = ParameterStringFilter::builder()
        .key("Name")
        .option("Equals")
        .values(name)
        .build()
        .map_err(|e| SsmError::Transport(e.to_string()))?;
    let mut next_token = None;
    for _ in 0..MAX_DESCRIBE_PAGES {
        let output = client
            .describe_parameters()
            .parameter_filters(filter.clone())
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| cause(&e))?;
        if let Some(found) = output
            .parameters
            .unwrap_or_default()
            .into_iter()
            .find(|m| m.name() == Some(name))
        {
            return Ok(Some(found));
        }
        next_token = output.next_token;
        if next_token.is_none() {
            break;
        }
    }
    Ok(None)
}

/// The version now in force (without decryption), `None` when there is no parameter.
async fn version_now(client: &aws_sdk_ssm::Client, name: &str) -> Result<Option<i64>, SsmError> {
    match client.get_parameter().name(name).send().await {
        Ok(output) => output
            .parameter
            .map(|p| Some(p.version))
            .ok_or(SsmError::NoParameter),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(cause(&e)),
    }
}

fn is_not_found(
    error: &SdkError<aws_sdk_ssm::operation::get_parameter::GetParameterError, Response>,
) -> bool {
    error
        .as_service_error()
        .is_some_and(|e| e.is_parameter_not_found())
}

/// Writes `text` as the next version of `name`, unchanged, at `tier`, keeping the kind, KMS
/// key, description and allowed pattern of `in_force` (a new parameter is a String). Returns
/// the version written. Refuses, writing nothing, when the version in force is no longer
/// the one read; reports after the fact a write that another one overtook.
pub async fn write(
    client: &aws_sdk_ssm::Client,
    name: &str,
    text: &str,
    tier: Tier,
    in_force: Option<&InForce>,
) -> Result<i64, PublishError> {
    let read = in_force.map(|p| p.version);
    let now = version_now(client, name)
        .await
        .map_err(|cause| PublishError::Read {
            name: name.to_owned(),
            cause,
        })?;
    if now != read {
        return Err(PublishError::Moved {
            name: name.to_owned(),
            read,
            now,
        });
    }
    let mut request = client
        .put_parameter()
        .name(name)
        .value(text)
        .tier(match tier {
            Tier::Standard => ParameterTier::Standard,
            Tier::Advanced => ParameterTier::Advanced,
        })
        // Overwrite only a parameter that exists: creating one that someone else has just
        // created fails with ParameterAlreadyExists.
        .overwrite(in_force.is_some());
    match in_force {
        None => request = request.r#type(ParameterType::String),
        Some(in_force) => {
            request = match &in_force.kind {
                Kind::String => request.r#type(ParameterType::String),
                // Named again: a SecureString written without its key gets the default one.
                Kind::SecureString { key_id } => request
                    .r#type(ParameterType::SecureString)
                    .set_key_id(key_id.clone()),
            };
            request = request
                .set_description(in_force.description.clone())
                .set_allowed_pattern(in_force.allowed_pattern.clone());
        }
    }
    let answer = request
        .customize()
        .config_override(
            aws_sdk_ssm::config::Builder::default().retry_config(RetryConfig::disabled()),
        )
        .send()
        .await;
    let written = match answer {
        Ok(output) => output.version,
        Err(e) => {
            let contended = e
                .as_service_error()
                .is_some_and(|s| s.is_parameter_already_exists() || s.is_too_many_updates());
            let cause = cause(&e);
            return Err(match e {
                _ if contended => PublishError::Contended {
                    name: name.to_owned(),
                    cause,
                },
                SdkError::ServiceError(_) | SdkError::ConstructionFailure(_) => {
                    PublishError::Refused {
                        name: name.to_owned(),
                        cause,
                    }
                }
                _ => PublishError::Unknown {
                    name: name.to_owned(),
                    cause,
                    now: match version_now(client, name).await {
                        Ok(now) if now == read => {
                            format!("{} is still in force", describe_version(now))
                        }
                        Ok(now) => format!(
                            "{} is now in force (was {})",
                            describe_version(now),
                            describe_version(read)
                        ),
                        Err(e) => format!("the version in force cannot be read either ({e})"),
                    },
                },
            });
        }
    };
    let expected = read.unwrap_or(0) + 1;
    if written != expected {
        return Err(PublishError::Overtaken {
            name: name.to_owned(),
            read: read.unwrap_or(0),
            written,
        });
    }
    Ok(written)
}
