//! The TaskRouter REST API: queue friendly names (for rules that name queues) and task
//! annotations (annotate mode). One HTTP client, built once, on the HTTPS stack SSM uses too
//! (see `https`); the Voice API's adapter (`voice_api`) sends through it as well.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, RETRY_AFTER, USER_AGENT};
use hyper::{HeaderMap, Method, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use serde_json::value::RawValue;

use super::chain::error_chain;
use super::https::RootsError;
use super::tokens::{AnyTokens, TokenSource};
pub use crate::ports::Annotated;
use crate::ports::{QueueDirectory, TaskAnnotations};
use crate::taskrouter::{STAMP_KEY, stamp_record};

/// A lookup that has not finished by then has failed; with an SSM refresh (2.5 s at most)
/// the answer still leaves TaskRouter's 5 s with room to spare.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_millis(1500);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(700);
/// After a 429 without `Retry-After`, and the most any `Retry-After` is honoured.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Task and TaskQueue resources are a few KB; attributes can be up to 16 KB.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Names remembered at most; the cache starts over past this.
const MAX_CACHED: usize = 10_000;
/// Fetch-merge-write rounds for one annotation before giving up on a busy task.
pub const ANNOTATION_ATTEMPTS: u32 = 3;

/// How requests to Twilio authenticate.
#[derive(Clone)]
pub enum Credentials {
    /// `TWILIO_API_KEY` / `TWILIO_API_SECRET`.
    ApiKey { sid: String, secret: String },
    /// The callback's AccountSid and the auth token(s) of the signature check.
    AuthToken(Arc<AnyTokens>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("no answer within {} ms", LOOKUP_TIMEOUT.as_millis())]
    Timeout,
    #[error("TaskRouter answered {0}")]
    Status(u16),
    #[error("backing off after a 429 from TaskRouter")]
    BackingOff,
    #[error("the request failed: {0}")]
    Transport(String),
    #[error("the answer is not what TaskRouter documents: {0}")]
    Malformed(&'static str),
    #[error("no auth token is available")]
    NoToken,
    #[error("the callback has no {0}")]
    Missing(&'static str),
    #[error("the task kept changing: {ANNOTATION_ATTEMPTS} writes refused with 412")]
    Busy,
}

/// Why [`TaskRouterApi::send`] got no answer; each API's adapter says it in its own error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SendError {
    #[error("no auth token is available")]
    NoToken,
    #[error("the callback has no {0}")]
    Missing(&'static str),
    #[error("the request failed: {0}")]
    Transport(String),
}

impl From<SendError> for ApiError {
    fn from(error: SendError) -> ApiError {
        match error {
            SendError::NoToken => ApiError::NoToken,
            SendError::Missing(what) => ApiError::Missing(what),
            SendError::Transport(detail) => ApiError::Transport(detail),
        }
    }
}

/// An answer from a Twilio REST API.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The REST client with its credentials, for one base URL: TaskRouter's, or (for
/// `voice_api`) the Voice API's.
pub struct TaskRouterApi {
    client: HttpClient,
    base_url: String,
    credentials: Credentials,
    /// The largest answer read; a larger one is a transport error.
    response_limit: usize,
}

impl TaskRouterApi {
    pub fn new(base_url: &str, credentials: Credentials) -> Result<TaskRouterApi, RootsError> {
        let https = super::https::connector(Some(CONNECT_TIMEOUT))?;
        Ok(TaskRouterApi {
            client: Client::builder(TokioExecutor::new()).build(https),
            base_url: base_url.trim_end_matches('/').to_owned(),
            credentials,
            response_limit: MAX_RESPONSE_BYTES,
        })
    }

    /// The same client, reading answers up to `bytes` (a page of 1,000 recordings is over
    /// a megabyte).
    pub fn with_response_limit(mut self, bytes: usize) -> TaskRouterApi {
        self.response_limit = bytes;
        self
    }

    /// The base URL followed by `path` (which starts with `/`).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends a request with each credential in turn until one is not refused (tokens rotate).
    pub(crate) async fn send(
        &self,
        account_sid: Option<&str>,
        method: Method,
        url: &str,
        headers: &[(hyper::header::HeaderName, &str)],
        body: Option<String>,
    ) -> Result<Answer, SendError> {
        let authorizations = match &self.credentials {
            Credentials::ApiKey { sid, secret } => vec![basic(sid, secret)],
            Credentials::AuthToken(tokens) => {
                let account_sid = account_sid.ok_or(SendError::Missing("AccountSid"))?;
                let tokens = tokens.current().await.ok_or(SendError::NoToken)?;
                tokens
                    .as_slice()
                    .iter()
                    .map(|t| basic(account_sid, t))
                    .collect()
            }
        };
        let mut refused = None;
        for authorization in authorizations {
            let mut request = hyper::Request::builder()
                .method(method.clone())
                .uri(url)
                .header(AUTHORIZATION, authorization)
                .header(ACCEPT, "application/json")
                .header(
                    USER_AGENT,
                    concat!("conditional-recording/", env!("CARGO_PKG_VERSION")),
                );
            for (name, value) in headers {
                request = request.header(name, *value);
            }
            let body = Full::new(body.clone().map(Bytes::from).unwrap_or_default());
            let request = request
                .body(body)
                .map_err(|e| SendError::Transport(e.to_string()))?;
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| SendError::Transport(error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, self.response_limit)
                .collect()
                .await
                .map_err(|e| SendError::Transport(e.to_string()))?
                .to_bytes();
            let answer = Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            };
            if answer.status != StatusCode::UNAUTHORIZED {
                return Ok(answer);
            }
            refused = Some(answer);
        }
        refused.ok_or(SendError::NoToken)
    }
}

/// Queue friendly names, cached per (workspace, queue) for the rules TTL.
pub struct QueueNames {
    api: Arc<TaskRouterApi>,
    ttl: Duration,
    cache: Mutex<HashMap<QueueKey, (Arc<str>, Instant)>>,
    backoff_until: Mutex<Option<Instant>>,
}

/// (WorkspaceSid, TaskQueueSid).
type QueueKey = (String, String);

impl QueueNames {
    pub fn new(api: Arc<TaskRouterApi>, ttl: Duration) -> QueueNames {
        QueueNames {
            api,
            ttl,
            cache: Mutex::new(HashMap::new()),
            backoff_until: Mutex::new(None),
        }
    }
}

impl QueueDirectory for QueueNames {
    type Error = ApiError;

    /// The queue's friendly name, from the cache or from TaskRouter.
    async fn friendly_name(
        &self,
        account_sid: Option<&str>,
        workspace_sid: Option<&str>,
        queue_sid: &str,
    ) -> Result<Arc<str>, ApiError> {
        let workspace_sid = workspace_sid.ok_or(ApiError::Missing("WorkspaceSid"))?;
        let key = (workspace_sid.to_owned(), queue_sid.to_owned());
        let now = Instant::now();
        if let Some((name, expires)) = lock(&self.cache).get(&key)
            && now < *expires
        {
            return Ok(Arc::clone(name));
        }
        if lock(&self.backoff_until).is_some_and(|until| now < until) {
            return Err(ApiError::BackingOff);
        }
        let url = self.api.url(&format!(
            "/v1/Workspaces/{workspace_sid}/TaskQueues/{queue_sid}"
        ));
        let answer = tokio::time::timeout(
            LOOKUP_TIMEOUT,
            self.api.send(account_sid, Method::GET, &url, &[], None),
        )
        .await
        .map_err(|_| ApiError::Timeout)??;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            let wait = answer
                .headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, std::time::SystemTime::now()))
                .unwrap_or(DEFAULT_BACKOFF)
                .min(MAX_BACKOFF);
            *lock(&self.backoff_until) = Some(Instant::now() + wait);
        }
        if !answer.status.is_success() {
            return Err(ApiError::Status(answer.status.as_u16()));
        }
        let queue: Value =
            serde_json::from_slice(&answer.body).map_err(|_| ApiError::Malformed("not JSON"))?;
        let name: Arc<str> = queue["friendly_name"]
            .as_str()
            .map(Arc::from)
            .ok_or(ApiError::Malformed("no friendly_name"))?;
        let mut cache = lock(&self.cache);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, (Arc::clone(&name), Instant::now() + self.ttl));
        Ok(name)
    }
}

/// Writes decisions into tasks' attributes (annotate mode).
pub struct Annotator {
    api: Arc<TaskRouterApi>,
}

impl Annotator {
    pub fn new(api: Arc<TaskRouterApi>) -> Annotator {
        Annotator { api }
    }
}

impl TaskAnnotations for Annotator {
    type Error = ApiError;

    /// Merges `annotation` into the task's current attributes under [`STAMP_KEY`], with
    /// `If-Match` so a concurrent writer is never clobbered: on `412` the task is fetched and
    /// merged again. A stamp already on the task (an earlier reservation's: the call's first
    /// decision) is kept, and nothing is written. A `404` is [`Annotated::TaskGone`].
    async fn annotate(
        &self,
        account_sid: Option<&str>,
        workspace_sid: Option<&str>,
        task_sid: &str,
        annotation: &Value,
    ) -> Result<Annotated, ApiError> {
        let workspace_sid = workspace_sid.ok_or(ApiError::Missing("WorkspaceSid"))?;
        let url = self
            .api
            .url(&format!("/v1/Workspaces/{workspace_sid}/Tasks/{task_sid}"));
        for attempt in 1..=ANNOTATION_ATTEMPTS {
            let task = self
                .api
                .send(account_sid, Method::GET, &url, &[], None)
                .await?;
            if task.status == StatusCode::NOT_FOUND {
                return Ok(Annotated::TaskGone);
            }
            if !task.status.is_success() {
                return Err(ApiError::Status(task.status.as_u16()));
            }
            let etag = task
                .headers
                .get(ETAG)
                .and_then(|v| v.to_str().ok())
                .ok_or(ApiError::Malformed("no ETag"))?
                .to_owned();
            let attributes = match annotated_attributes(&task.body, annotation)? {
                Merged::Attributes(attributes) => attributes,
                Merged::Stamped(record) => return Ok(Annotated::Kept { record }),
            };
            let form = form_urlencoded::Serializer::new(String::new())
                .append_pair("Attributes", &attributes)
                .finish();
            let headers = [
                (CONTENT_TYPE, "application/x-www-form-urlencoded"),
                (IF_MATCH, etag.as_str()),
            ];
            let written = self
                .api
                .send(account_sid, Method::POST, &url, &headers, Some(form))
                .await?;
            match written.status {
                status if status.is_success() => {
                    return Ok(Annotated::Written { attempts: attempt });
                }
                StatusCode::PRECONDITION_FAILED => continue,
                // Deleted between the read and the write.
                StatusCode::NOT_FOUND => return Ok(Annotated::TaskGone),
                status => return Err(ApiError::Status(status.as_u16())),
            }
        }
        Err(ApiError::Busy)
    }
}

/// What [`annotated_attributes`] makes of a task.
#[derive(Debug, PartialEq, Eq)]
enum Merged {
    /// The attributes to write, as JSON text.
    Attributes(String),
    /// They already hold a stamp, with this decision: nothing is written.
    Stamped(bool),
}

/// The task's attributes with `annotation` under [`STAMP_KEY`] (in the place of something
/// else under that key, else last), unless they already hold a stamp ([`stamp_record`]; with
/// the key twice, the last counts, as in `JSON.parse`). Every other member is written back as the text it was, not as a parse of it: a double a
/// JavaScript writer stored, an integer past 2^64, a string with half a surrogate pair all
/// come back exactly as they were. Attributes that are not a JSON object are refused rather
/// than overwritten.
fn annotated_attributes(task: &[u8], annotation: &Value) -> Result<Merged, ApiError> {
    let task: Value = serde_json::from_slice(task).map_err(|_| ApiError::Malformed("not JSON"))?;
    let text = task["attributes"]
        .as_str()
        .ok_or(ApiError::Malformed("no attributes string"))?;
    let Members(members) = serde_json::from_str(text)
        .or_else(
            |error| match crate::taskrouter::without_lone_surrogates(text) {
                // Only where a name holds half a pair, which serde_json cannot read as a String.
                Some(repaired) => serde_json::from_str(&repaired),
                None => Err(error),
            },
        )
        .map_err(|_| ApiError::Malformed("the task's attributes are not a JSON object"))?;
    let stamped = members
        .iter()
        .rev()
        .find(|(name, _)| name == STAMP_KEY)
        .and_then(|(_, value)| serde_json::from_str::<Value>(value.get()).ok())
        .and_then(|stamp| stamp_record(&stamp));
    if let Some(record) = stamped {
        return Ok(Merged::Stamped(record));
    }
    let ours = serde_json::to_string(annotation).map_err(|_| ApiError::Malformed("annotation"))?;
    let mut written = String::with_capacity(text.len() + ours.len() + 32);
    let mut placed = false;
    written.push('{');
    for (name, value) in &members {
        let value = if name == STAMP_KEY {
            if placed {
                continue;
            }
            placed = true;
            ours.as_str()
        } else {
            value.get()
        };
        if written.len() > 1 {
            written.push(',');
        }
        written.push_str(&Value::String(name.clone()).to_string());
        written.push(':');
        written.push_str(value);
    }
    if !placed {
        if written.len() > 1 {
            written.push(',');
        }
        written.push_str(&Value::String(STAMP_KEY.to_owned()).to_string());
        written.push(':');
        written.push_str(&ours);
    }
    written.push('}');
    Ok(Merged::Attributes(written))
}

/// A JSON object's members in order, each value as its text.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Members, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Members;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// A `Retry-After` value (RFC 9110): seconds, however many digits, or an HTTP date (a date
/// already past is no wait). `None` when it is neither.
pub(crate) fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(value.parse().map_or(Duration::MAX, Duration::from_secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The locks guard plain data with no invariant a panic could break.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{ApiError, Merged, STAMP_KEY, annotated_attributes, retry_after};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn retry_after_is_read_in_seconds_or_as_a_date() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let date = |t: SystemTime| httpdate::fmt_http_date(t);
        assert_eq!(retry_after("25", now), Some(Duration::from_secs(25)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("99999999999999999999", now),
            Some(Duration::MAX)
        );
        assert_eq!(
            retry_after(&date(now + Duration::from_secs(25)), now),
            Some(Duration::from_secs(25))
        );
        assert_eq!(
            retry_after(&date(now - Duration::from_secs(60)), now),
            Some(Duration::ZERO)
        );
        for nonsense in ["", "-5", "1.5", "soon", "Tue, 31 Feb 2026 99:00:00 GMT"] {
            assert_eq!(retry_after(nonsense, now), None, "{nonsense}");
        }
    }

    fn task(attributes: &str) -> Vec<u8> {
        json!({"sid": "WT1", "attributes": attributes})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn an_earlier_stamp_stays_and_anything_else_is_replaced_with_the_rest_kept_as_text() {
        let ours = json!({"record": false});
        let written = |attributes: &str| annotated_attributes(&task(attributes), &ours);
        // An earlier reservation's stamp is the call's first decision: nothing is written.
        assert_eq!(
            written(r#"{"a": 0.42451918914251396, "conditional_recording": {"record": true}}"#),
            Ok(Merged::Stamped(true))
        );
        assert_eq!(
            written(r#"{"conditional_recording": {"record": false, "reason": "x"}}"#),
            Ok(Merged::Stamped(false))
        );
        // With the key twice, the last counts, as JSON.parse reads it.
        assert_eq!(
            written(
                r#"{"conditional_recording":{"record":false},"conditional_recording":{"record":true}}"#
            ),
            Ok(Merged::Stamped(true))
        );
        // What is no stamp takes our place; the rest is written back as it was.
        assert_eq!(
            written(
                r#"{"a": 0.42451918914251396, "conditional_recording": {"record": "no"}, "b": [1E+2]}"#
            ),
            Ok(Merged::Attributes(
                r#"{"a":0.42451918914251396,"conditional_recording":{"record":false},"b":[1E+2]}"#
                    .to_owned()
            ))
        );
        assert_eq!(
            written("{}"),
            Ok(Merged::Attributes(format!(
                r#"{{"{STAMP_KEY}":{{"record":false}}}}"#
            )))
        );
        // Two values that are no stamp (another writer's mistake) become one.
        assert_eq!(
            written(r#"{"conditional_recording":1,"x":"\u00e9","conditional_recording":2}"#),
            Ok(Merged::Attributes(
                r#"{"conditional_recording":{"record":false},"x":"\u00e9"}"#.to_owned()
            ))
        );
        // Half a surrogate pair in a value is kept; in a name, it becomes U+FFFD.
        assert_eq!(
            written(r#"{"v":"\ud83d"}"#),
            Ok(Merged::Attributes(
                r#"{"v":"\ud83d","conditional_recording":{"record":false}}"#.to_owned()
            ))
        );
        assert_eq!(
            written(r#"{"\ud83d":1}"#),
            Ok(Merged::Attributes(
                "{\"\u{fffd}\":1,\"conditional_recording\":{\"record\":false}}".to_owned()
            ))
        );
        for not_an_object in ["[]", "3", "\"{}\"", "{", ""] {
            assert_eq!(
                written(not_an_object),
                Err(ApiError::Malformed(
                    "the task's attributes are not a JSON object"
                )),
                "{not_an_object}"
            );
        }
        assert_eq!(
            annotated_attributes(b"{\"attributes\": 3}", &ours),
            Err(ApiError::Malformed("no attributes string"))
        );
    }
}
