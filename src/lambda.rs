//! Lambda mode: API Gateway events in, the shared handler, API Gateway responses out.
//!
//! `lambda_http` panics on a body marked base64 that is not, and on a host, path or query it
//! cannot turn into a URI (its conversion uses `expect` and `unwrap`). Events are checked
//! here first, and a bad one becomes a 400.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use base64::Engine;
use lambda_http::http::{self, header::HOST};
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, LambdaEvent, Request, RequestExt, TransformResponse};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::handler::{BodyProblem, MAX_BODY_BYTES};
use crate::logging;
use crate::service::{
    App, Ledger, QueueDirectory, Recordings, RulesSource, TaskAnnotations, TokenSource,
};

/// Turns an API Gateway event into the request the handler sees, never panicking.
pub fn into_request(mut event: LambdaRequest) -> Request {
    let problem = match &mut event {
        LambdaRequest::ApiGatewayV1(e) => take_encoded(&mut e.body, &mut e.is_base64_encoded),
        LambdaRequest::ApiGatewayV2(e) => take_encoded(&mut e.body, &mut e.is_base64_encoded),
        _ => Ok(None),
    };
    let problem = if has_sound_uri(&event) {
        problem
    } else {
        neutralise_uri(&mut event);
        Err(BodyProblem::MalformedUri)
    };
    let mut request = Request::from(event);
    match problem {
        Ok(Some(bytes)) => *request.body_mut() = Body::Binary(bytes),
        Ok(None) => {}
        Err(problem) => {
            request.extensions_mut().insert(problem);
        }
    }
    request
}

/// Decodes a base64 body in place of `lambda_http`, leaving the event with no encoded body.
fn take_encoded(
    body: &mut Option<String>,
    encoded: &mut bool,
) -> Result<Option<Vec<u8>>, BodyProblem> {
    if !*encoded {
        return Ok(None);
    }
    *encoded = false;
    let Some(text) = body.take() else {
        return Ok(None);
    };
    // Base64 grows a body by 4/3: refuse an oversized one before decoding it.
    if text.len() > MAX_BODY_BYTES / 3 * 4 + 4 {
        return Err(BodyProblem::TooLarge);
    }
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map(Some)
        .map_err(|_| BodyProblem::Undecodable)
}

/// Answers one invocation: the API Gateway response as JSON, in the shape the event's
/// origin (REST or HTTP API) expects.
pub async fn answer<S, Q, A, T, R, L>(
    app: &App<S, Q, A, T, R, L>,
    event: LambdaEvent<LambdaRequest>,
) -> Value
where
    S: RulesSource,
    Q: QueueDirectory,
    A: TaskAnnotations,
    T: TokenSource,
    R: Recordings,
    L: Ledger,
{
    let origin = event.payload.request_origin();
    let request = into_request(event.payload).with_lambda_context(event.context);
    let handled = async move { Ok::<_, Infallible>(app.handle(request).await) };
    match TransformResponse::Request(origin, Box::pin(handled)).await {
        Ok(response) => serde_json::to_value(response).unwrap_or_else(|_| internal_error()),
        Err(never) => match never {},
    }
}

/// Serialising a response of strings cannot fail; this keeps the answer well-formed anyway.
fn internal_error() -> Value {
    json!({"statusCode": 500, "headers": {"content-type": "application/json"}, "body": "{\"error\":\"internal error\"}"})
}

/// Whether `lambda_http` can build the request URI: `scheme://host/path` must parse as a URL
/// and, with the query, as a URI.
fn has_sound_uri(event: &LambdaRequest) -> bool {
    let (headers, domain, path, stage, raw_query) = match event {
        LambdaRequest::ApiGatewayV1(e) => (
            &e.headers,
            e.request_context.domain_name.as_deref(),
            e.path.as_deref(),
            e.request_context.stage.as_deref(),
            // The query `lambda_http` writes from the parameter maps, as it writes it.
            Some(if e.multi_value_query_string_parameters.is_empty() {
                e.query_string_parameters.to_query_string()
            } else {
                e.multi_value_query_string_parameters.to_query_string()
            }),
        ),
        LambdaRequest::ApiGatewayV2(e) => (
            &e.headers,
            e.request_context.domain_name.as_deref(),
            e.raw_path.as_deref(),
            e.request_context.stage.as_deref(),
            e.raw_query_string.clone(),
        ),
        _ => return true,
    };
    let path = path.unwrap_or_default();
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or(domain)
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("https");
    // The path is used with and without the stage, depending on the event and settings.
    let staged = stage.map(|stage| format!("/{stage}{path}"));
    [Some(path), staged.as_deref()]
        .into_iter()
        .flatten()
        .all(|path| {
            let Ok(url) = url::Url::parse(&format!("{scheme}://{host}{path}")) else {
                return false;
            };
            let local = url::Url::parse(&format!("http://localhost{path}")).is_ok();
            let query = raw_query
                .as_deref()
                .filter(|q| !q.is_empty())
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            local && http::Uri::try_from(format!("{url}{query}")).is_ok()
        })
}

/// Replaces what `lambda_http` cannot turn into a URI with a harmless request line.
fn neutralise_uri(event: &mut LambdaRequest) {
    match event {
        LambdaRequest::ApiGatewayV1(e) => {
            e.headers.remove(HOST);
            e.headers.remove("x-forwarded-proto");
            e.multi_value_headers.remove(HOST);
            e.multi_value_headers.remove("x-forwarded-proto");
            e.request_context.domain_name = None;
            e.request_context.stage = None;
            e.path = Some("/".into());
            e.query_string_parameters = Default::default();
            e.multi_value_query_string_parameters = Default::default();
        }
        LambdaRequest::ApiGatewayV2(e) => {
            e.headers.remove(HOST);
            e.headers.remove("x-forwarded-proto");
            e.request_context.domain_name = None;
            e.request_context.stage = None;
            e.raw_path = Some("/".into());
            e.raw_query_string = None;
        }
        _ => {}
    }
}

/// More distinct header names than any API Gateway request can carry (its headers are
/// limited to about 10 KB). `http`'s header map panics past about 24,500, so an event with
/// more is answered 431 before it is turned into a request.
pub const MAX_HEADER_NAMES: usize = 1_000;

/// An event that is not an API Gateway REST or HTTP API event (a direct invoke of something
/// else): reported to the runtime as the invocation's error, without quoting the event.
#[derive(Debug, thiserror::Error)]
#[error("the event is not an API Gateway REST or HTTP API event")]
pub struct NotAnApiGatewayEvent;

impl From<NotAnApiGatewayEvent> for lambda_http::lambda_runtime::Diagnostic {
    fn from(error: NotAnApiGatewayEvent) -> Self {
        lambda_http::lambda_runtime::Diagnostic {
            error_type: "NotAnApiGatewayEvent".into(),
            error_message: error.to_string(),
        }
    }
}

/// Answers one invocation from the event's JSON text: checked for what would make the
/// conversion to a request panic, then as [`answer`].
pub async fn answer_event<S, Q, A, T, R, L>(
    app: &App<S, Q, A, T, R, L>,
    event: LambdaEvent<Box<RawValue>>,
) -> Result<Value, NotAnApiGatewayEvent>
where
    S: RulesSource,
    Q: QueueDirectory,
    A: TaskAnnotations,
    T: TokenSource,
    R: Recordings,
    L: Ledger,
{
    let (text, context) = (event.payload, event.context);
    if header_names(text.get()) > MAX_HEADER_NAMES {
        return Ok(json!({
            "statusCode": 431,
            "headers": {"content-type": "application/json"},
            "body": json!({"error": format!("more than {MAX_HEADER_NAMES} header names")}).to_string(),
            "isBase64Encoded": false,
        }));
    }
    let payload: LambdaRequest =
        serde_json::from_str(text.get()).map_err(|_| NotAnApiGatewayEvent)?;
    Ok(answer(app, LambdaEvent::new(payload, context)).await)
}

/// How many header names the larger of the event's `headers` and `multiValueHeaders` holds,
/// counted without building anything; 0 when the event is not shaped so (the conversion
/// says why).
fn header_names(event: &str) -> usize {
    #[derive(serde::Deserialize)]
    struct Headers {
        headers: Option<Names>,
        #[serde(rename = "multiValueHeaders")]
        multi_value_headers: Option<Names>,
    }
    struct Names(usize);
    impl<'de> serde::Deserialize<'de> for Names {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Names, D::Error> {
            struct Counter;
            impl<'de> serde::de::Visitor<'de> for Counter {
                type Value = Names;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a map of headers")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Names, A::Error> {
                    let mut names = 0;
                    while map
                        .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                        .is_some()
                    {
                        names += 1;
                    }
                    Ok(Names(names))
                }
            }
            deserializer.deserialize_map(Counter)
        }
    }
    // A REST event names most headers in both maps; the request gets their union, at most
    // twice the larger count.
    serde_json::from_str::<Headers>(event).map_or(0, |h| {
        h.headers
            .map_or(0, |n| n.0)
            .max(h.multi_value_headers.map_or(0, |n| n.0))
    })
}

/// Runs the Lambda runtime loop until the runtime stops it. Each invocation is handled within
/// [`logging::in_invocation`], so what it logs carries its request ID. A scheduled sweep's
/// event ([`SweepEvent`]) runs reconciliation through `sweep`; any other event is an API
/// Gateway request.
pub async fn run<S, Q, A, T, R, L, F, Fut>(
    app: Arc<App<S, Q, A, T, R, L>>,
    sweep: F,
) -> Result<(), lambda_http::Error>
where
    S: RulesSource,
    Q: QueueDirectory,
    A: TaskAnnotations,
    T: TokenSource,
    R: Recordings,
    L: Ledger,
    F: Fn(SweepEvent) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, SweepFailed>> + Send,
{
    let sweep = Arc::new(sweep);
    lambda_http::lambda_runtime::run(lambda_http::service_fn(
        move |event: LambdaEvent<Box<RawValue>>| {
            let app = Arc::clone(&app);
            let sweep = Arc::clone(&sweep);
            let request_id = event.context.request_id.clone();
            logging::in_invocation(request_id, async move {
                match SweepEvent::read(event.payload.get()) {
                    Some(sweep_event) => sweep(sweep_event).await.map_err(Invocation::Sweep),
                    None => answer_event(&app, event)
                        .await
                        .map_err(Invocation::NotApiGateway),
                }
            })
        },
    ))
    .await
}

/// The event the schedule sends the sweep: `{"reconcile": {"since": "48h", "fix": true}}`.
/// Only a principal allowed to invoke the function directly can send one: API Gateway wraps
/// every request in its own event shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepEvent {
    pub reconcile: SweepWindow,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepWindow {
    /// The window up to now: `48h`, as `reconcile --since`.
    pub since: String,
    #[serde(default)]
    pub fix: bool,
}

impl SweepEvent {
    /// The event, when it is one (an API Gateway event never is).
    pub fn read(text: &str) -> Option<SweepEvent> {
        serde_json::from_str(text).ok()
    }
}

/// Why a sweep did not run, in one line, reported as the invocation's error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SweepFailed(pub String);

/// An invocation's error, as the runtime reports it.
#[derive(Debug, thiserror::Error)]
pub enum Invocation {
    #[error(transparent)]
    NotApiGateway(NotAnApiGatewayEvent),
    #[error(transparent)]
    Sweep(SweepFailed),
}

impl From<Invocation> for lambda_http::lambda_runtime::Diagnostic {
    fn from(error: Invocation) -> Self {
        match error {
            Invocation::NotApiGateway(error) => error.into(),
            Invocation::Sweep(error) => lambda_http::lambda_runtime::Diagnostic {
                error_type: "SweepFailed".into(),
                error_message: error.to_string(),
            },
        }
    }
}
