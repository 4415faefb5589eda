//! Recording media in the customer's own bucket (SPEC section 11), through S3 on the shared
//! AWS SDK configuration: every version and delete marker of one key is listed
//! (`ListObjectVersions`, the key as the prefix) and deleted by its version ID, so no copy
//! of the audio remains, in a versioned bucket or not. Needs `s3:ListBucketVersions`,
//! `s3:DeleteObject` and `s3:DeleteObjectVersion` on the bucket, and nothing else.

use aws_config::Region;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::http::Response;

use crate::media::S3Object;
use crate::ports::{MediaError, MediaStore, Removed};

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);
const OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);
/// Versions asked for per `ListObjectVersions` page: S3's most.
pub const LIST_PAGE: i32 = 1000;
/// Rounds of listing and deleting before a key that still lists versions is given up on.
/// The round after the deletions lists none, and so proves that none remains; a version
/// written meanwhile is deleted by the next.
const ROUNDS: usize = 3;
/// The version ID S3 gives an object stored while the bucket was not versioned.
const NULL_VERSION: &str = "null";

/// The customer's buckets, through one S3 client.
#[derive(Debug, Clone)]
pub struct S3Media {
    client: Client,
    page_size: i32,
}

impl S3Media {
    pub fn new(config: &aws_config::SdkConfig) -> S3Media {
        // S3's answers to a list of versions and to deletes under Object Lock take longer
        // than SSM's and DynamoDB's: its own timeouts, still well inside a delivery's budget.
        let mut s3 = aws_sdk_s3::config::Builder::from(config).timeout_config(
            super::ssm::timeouts(CONNECT_TIMEOUT, ATTEMPT_TIMEOUT, OPERATION_TIMEOUT),
        );
        // An S3 on a local endpoint (moto on 127.0.0.1) has no bucket subdomains: it is
        // addressed by path. AWS's own is addressed by host, as S3 prefers. The SDK reads
        // `AWS_ENDPOINT_URL_S3` itself, so the shared configuration does not show it.
        let local = config.endpoint_url().is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some_and(|v| !v.is_empty());
        if local {
            s3 = s3.force_path_style(true);
        }
        S3Media {
            client: Client::from_conf(s3.build()),
            page_size: LIST_PAGE,
        }
    }

    /// Lists this many versions per page: fewer than S3's most, to test paging without a
    /// thousand versions.
    pub fn with_page_size(self, page_size: i32) -> S3Media {
        S3Media {
            page_size: page_size.clamp(1, LIST_PAGE),
            ..self
        }
    }

    /// The client for the object's region: the one its URL names, when that is not the
    /// service's (S3 refuses a request sent to another region's endpoint).
    fn client_for(&self, object: &S3Object) -> Client {
        let config = self.client.config();
        match &object.region {
            Some(region) if config.region().map(Region::as_ref) != Some(region.as_str()) => {
                let config = config.to_builder().region(Region::new(region.clone()));
                Client::from_conf(config.build())
            }
            _ => self.client.clone(),
        }
    }

    /// The version IDs of every version and delete marker of exactly the object's key.
    async fn versions(
        &self,
        client: &Client,
        object: &S3Object,
    ) -> Result<Vec<String>, MediaError> {
        const OPERATION: &str = "ListObjectVersions";
        let mut found = Vec::new();
        // The first page has no markers; each next one starts after the version a page
        // ended on.
        let mut key_marker: Option<String> = None;
        let mut version_id_marker: Option<String> = None;
        loop {
            let page = client
                .list_object_versions()
                .bucket(&object.bucket)
                .prefix(&object.key)
                .max_keys(self.page_size)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_id_marker.clone())
                .send()
                .await
                .map_err(|error| from_sdk(OPERATION, &error))?;
            // The prefix lists longer keys too (`rec/RE1.wav.bak` for `rec/RE1.wav`): only
            // the key itself is taken.
            let versions = page.versions().iter().map(|v| (v.key(), v.version_id()));
            let deletes = page
                .delete_markers()
                .iter()
                .map(|d| (d.key(), d.version_id()));
            found.extend(
                versions
                    .chain(deletes)
                    .filter(|(key, _)| *key == Some(object.key.as_str()))
                    .map(|(_, id)| id.unwrap_or(NULL_VERSION).to_owned()),
            );
            // S3 lists by key, and the key sorts before every longer key it prefixes: a
            // page that ends past it has listed all of its versions.
            let next_key = page.next_key_marker();
            if page.is_truncated() != Some(true) || next_key != Some(object.key.as_str()) {
                return Ok(found);
            }
            let next_version = page.next_version_id_marker().map(str::to_owned);
            if key_marker.is_some() && next_version == version_id_marker {
                return Err(MediaError::Unavailable {
                    operation: OPERATION,
                    cause: "S3 named the same page twice".into(),
                });
            }
            key_marker = Some(object.key.clone());
            version_id_marker = next_version;
        }
    }
}

impl MediaStore for S3Media {
    async fn remove(&self, object: &S3Object) -> Result<Removed, MediaError> {
        let client = self.client_for(object);
        let mut removed = 0;
        for _ in 0..ROUNDS {
            // All of a round's versions are listed before any is deleted: a page's markers
            // name a version, and S3 need not find the next page from a deleted one.
            let versions = self.versions(&client, object).await?;
            if versions.is_empty() {
                return Ok(Removed { versions: removed });
            }
            for version_id in &versions {
                client
                    .delete_object()
                    .bucket(&object.bucket)
                    .key(&object.key)
                    .version_id(version_id)
                    .send()
                    .await
                    .map_err(|error| from_sdk("DeleteObject", &error))?;
            }
            removed += versions.len();
        }
        Err(MediaError::Unavailable {
            operation: "ListObjectVersions",
            cause: format!(
                "versions of the key were still listed after {ROUNDS} rounds of deletion"
            ),
        })
    }
}

/// S3's error codes that say to ask again later, whatever their status.
const TRANSIENT: [&str; 10] = [
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "TooManyRequests",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InternalError",
    "ServiceUnavailable",
];

/// One line for a failed request: S3's code and message (a refusal when S3 answered a `3xx`
/// or `4xx` that asking again will not change), or what kept the answer from coming. Never
/// the SDK's own text, which may quote the request.
fn from_sdk<E: ProvideErrorMetadata>(
    operation: &'static str,
    error: &SdkError<E, Response>,
) -> MediaError {
    let unavailable = |cause: &str| MediaError::Unavailable {
        operation,
        cause: cause.to_owned(),
    };
    let service = match error {
        SdkError::ServiceError(service) => service,
        SdkError::TimeoutError(_) => return unavailable("no answer in time"),
        SdkError::DispatchFailure(_) => return unavailable("could not be sent"),
        SdkError::ResponseError(_) => return unavailable("the answer could not be read"),
        _ => return unavailable("the request could not be made"),
    };
    let status = service.raw().status().as_u16();
    let code = service.err().code();
    let reason = match (code, service.err().message()) {
        (Some(code), Some(message)) => format!("{code}: {}", one_line(message)),
        (Some(code), None) => code.to_owned(),
        (None, _) => format!("HTTP {status} without an error code"),
    };
    let transient = code.is_some_and(|code| TRANSIENT.contains(&code));
    if (300..500).contains(&status) && !matches!(status, 408 | 429) && !transient {
        MediaError::Refused { operation, reason }
    } else {
        MediaError::Unavailable {
            operation,
            cause: reason,
        }
    }
}

/// S3's message with its line breaks and other control characters as spaces.
fn one_line(message: &str) -> String {
    let spaced = message.replace(|c: char| c.is_control(), " ");
    spaced.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use aws_config::retry::RetryConfig;
    use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};

    use super::*;
    use crate::sources::https::SdkClient;

    /// What a removal reports when S3 answers its first request `status` with an S3 error.
    async fn failure_of(status: &str, code: &str, message: &str) -> MediaError {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
             <Message>{message}</Message><RequestId>R1</RequestId></Error>"
        );
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let endpoint = super::super::https::tests::one_shot(Some(answer.into_bytes().leak())).await;
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::for_tests()))
            .endpoint_url(endpoint)
            .http_client(SdkClient::new().expect("TLS settings"))
            .retry_config(RetryConfig::disabled())
            .build();
        let object = S3Object {
            bucket: "media".into(),
            key: "rec/RE1.wav".into(),
            region: None,
        };
        S3Media::new(&config)
            .remove(&object)
            .await
            .expect_err("a failure")
    }

    #[tokio::test]
    async fn what_s3_will_not_do_is_refused_and_what_may_pass_is_unavailable() {
        let refused = |reason: &str| MediaError::Refused {
            operation: "ListObjectVersions",
            reason: reason.into(),
        };
        let unavailable = |cause: &str| MediaError::Unavailable {
            operation: "ListObjectVersions",
            cause: cause.into(),
        };
        let cases = [
            (
                "403 Forbidden",
                "AccessDenied",
                "Access Denied",
                refused("AccessDenied: Access Denied"),
            ),
            (
                "404 Not Found",
                "NoSuchBucket",
                "The specified bucket does not exist",
                refused("NoSuchBucket: The specified bucket does not exist"),
            ),
            (
                "400 Bad Request",
                "InvalidRequest",
                "Object Lock\nconfiguration",
                refused("InvalidRequest: Object Lock configuration"),
            ),
            (
                "400 Bad Request",
                "RequestTimeout",
                "Your socket connection to the server was not read from",
                unavailable(
                    "RequestTimeout: Your socket connection to the server was not read from",
                ),
            ),
            (
                "503 Slow Down",
                "SlowDown",
                "Please reduce your request rate.",
                unavailable("SlowDown: Please reduce your request rate."),
            ),
            (
                "500 Internal Server Error",
                "InternalError",
                "We encountered an internal error.",
                unavailable("InternalError: We encountered an internal error."),
            ),
        ];
        for (status, code, message, expected) in cases {
            assert_eq!(
                failure_of(status, code, message).await,
                expected,
                "{status} {code}"
            );
        }
    }

    #[test]
    fn a_page_size_stays_within_what_s3_lists() {
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        assert_eq!(S3Media::new(&config).page_size, LIST_PAGE);
        assert_eq!(S3Media::new(&config).with_page_size(0).page_size, 1);
        assert_eq!(
            S3Media::new(&config).with_page_size(5000).page_size,
            LIST_PAGE
        );
    }
}
