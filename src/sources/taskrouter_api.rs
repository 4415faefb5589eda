//! The TaskRouter REST API: queue friendly names, for rules that name queues. One HTTP
//! client, built once, on the TLS stack the AWS SDK already brings (rustls, aws-lc).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, RETRY_AFTER, USER_AGENT};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::tokens::TokenSource;

/// A lookup that has not finished by then has failed; with an SSM refresh (2.5 s at most)
/// the answer still leaves TaskRouter's 5 s with room to spare.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_millis(1500);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(700);
/// After a 429 without `Retry-After`, and the most any `Retry-After` is honoured.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// TaskQueue resources are about 1.5 KB.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Names remembered at most; the cache starts over past this.
const MAX_CACHED: usize = 10_000;

pub const DEFAULT_BASE_URL: &str = "https://taskrouter.twilio.com";

/// How requests to Twilio authenticate.
pub enum Credentials {
    /// `TWILIO_API_KEY` / `TWILIO_API_SECRET`.
    ApiKey { sid: String, secret: String },
    /// The callback's AccountSid and the auth token(s) of the signature check.
    AuthToken(Arc<TokenSource>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("no answer within {} ms", LOOKUP_TIMEOUT.as_millis())]
    Timeout,
    #[error("TaskRouter answered {0}")]
    Status(u16),
    #[error("backing off after a 429 from TaskRouter")]
    BackingOff,
    #[error("the request failed: {0}")]
    Transport(String),
    #[error("the answer has no friendly_name")]
    Malformed,
    #[error("no auth token is available")]
    NoToken,
    #[error("the callback has no {0}")]
    Missing(&'static str),
}

/// (WorkspaceSid, TaskQueueSid).
type QueueKey = (String, String);

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

pub struct QueueNames {
    client: HttpClient,
    base_url: String,
    credentials: Credentials,
    ttl: Duration,
    cache: Mutex<HashMap<QueueKey, (Arc<str>, Instant)>>,
    backoff_until: Mutex<Option<Instant>>,
}

impl QueueNames {
    pub fn new(
        base_url: &str,
        credentials: Credentials,
        ttl: Duration,
    ) -> Result<QueueNames, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("cannot load the system's root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(QueueNames {
            client: Client::builder(TokioExecutor::new()).build(https),
            base_url: base_url.trim_end_matches('/').to_owned(),
            credentials,
            ttl,
            cache: Mutex::new(HashMap::new()),
            backoff_until: Mutex::new(None),
        })
    }

    /// The queue's friendly name, from the cache or from TaskRouter.
    pub async fn friendly_name(
        &self,
        account_sid: Option<&str>,
        workspace_sid: Option<&str>,
        queue_sid: &str,
    ) -> Result<Arc<str>, LookupError> {
        let workspace_sid = workspace_sid.ok_or(LookupError::Missing("WorkspaceSid"))?;
        let key = (workspace_sid.to_owned(), queue_sid.to_owned());
        let now = Instant::now();
        if let Some((name, expires)) = lock(&self.cache).get(&key)
            && now < *expires
        {
            return Ok(Arc::clone(name));
        }
        if lock(&self.backoff_until).is_some_and(|until| now < until) {
            return Err(LookupError::BackingOff);
        }
        let url = format!(
            "{}/v1/Workspaces/{workspace_sid}/TaskQueues/{queue_sid}",
            self.base_url
        );
        let name = tokio::time::timeout(LOOKUP_TIMEOUT, self.fetch_name(&url, account_sid))
            .await
            .map_err(|_| LookupError::Timeout)??;
        let mut cache = lock(&self.cache);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(key, (Arc::clone(&name), Instant::now() + self.ttl));
        Ok(name)
    }

    /// GET the queue with each credential in turn until one is accepted (tokens rotate).
    async fn fetch_name(
        &self,
        url: &str,
        account_sid: Option<&str>,
    ) -> Result<Arc<str>, LookupError> {
        let authorizations = match &self.credentials {
            Credentials::ApiKey { sid, secret } => vec![basic(sid, secret)],
            Credentials::AuthToken(tokens) => {
                let account_sid = account_sid.ok_or(LookupError::Missing("AccountSid"))?;
                let tokens = tokens.current().await.ok_or(LookupError::NoToken)?;
                tokens
                    .as_slice()
                    .iter()
                    .map(|t| basic(account_sid, t))
                    .collect()
            }
        };
        let mut last = LookupError::NoToken;
        for authorization in authorizations {
            match self.get(url, &authorization).await {
                Err(LookupError::Status(401)) => last = LookupError::Status(401),
                other => return other,
            }
        }
        Err(last)
    }

    async fn get(&self, url: &str, authorization: &str) -> Result<Arc<str>, LookupError> {
        let request = hyper::Request::get(url)
            .header(AUTHORIZATION, authorization)
            .header(ACCEPT, "application/json")
            .header(
                USER_AGENT,
                concat!("conditional-recording/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::new()))
            .map_err(|e| LookupError::Transport(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| LookupError::Transport(error_chain(&e)))?;
        let status = response.status();
        if status.as_u16() == 429 {
            let wait = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(DEFAULT_BACKOFF, Duration::from_secs)
                .min(MAX_BACKOFF);
            *lock(&self.backoff_until) = Some(Instant::now() + wait);
            return Err(LookupError::Status(429));
        }
        if !status.is_success() {
            return Err(LookupError::Status(status.as_u16()));
        }
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| LookupError::Transport(e.to_string()))?
            .to_bytes();
        let queue: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| LookupError::Malformed)?;
        queue["friendly_name"]
            .as_str()
            .map(Arc::from)
            .ok_or(LookupError::Malformed)
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// An error and its sources on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The locks guard plain data with no invariant a panic could break.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
