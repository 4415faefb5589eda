//! The HTTP face shared by Lambda mode and `serve`: a request in, its checks, the service
//! core ([`crate::service`]), an HTTP response out.

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;

pub use crate::service::{ANNOTATE_DEADLINE, DECISION_BUDGET, Inbound, Refusal, answer_in};
use crate::service::{
    App, Ledger, QueueDirectory, Recordings, RulesSource, Signatures, TaskAnnotations, TokenSource,
    UnknownUrl,
};
use crate::service::{Delivery, EventsInbound};
use crate::taskrouter::{self, CallbackError};
use crate::{metrics, refusal_log};

/// The assignment callback's route. A stage prefix (`/Prod/assignment`) is ignored for
/// routing.
pub const ROUTE: &str = "/assignment";
/// Where TaskRouter events arrive, for enforcement.
pub const EVENTS_ROUTE: &str = "/events";
/// The largest callback body accepted; TaskRouter's are a few KB.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Marks a request whose body was refused before it reached the handler (set by the
/// Lambda and `serve` front ends as a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProblem {
    /// Marked base64 but not valid base64.
    Undecodable,
    /// Over [`MAX_BODY_BYTES`].
    TooLarge,
    /// The client stopped sending, or sent too slowly.
    Unreadable,
    /// The event's host, path or query cannot form a URI.
    MalformedUri,
}

/// Why a request gets no decision.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("no such resource; post assignment callbacks to {ROUTE} and events to {EVENTS_ROUTE}")]
    NotFound,
    #[error("method not allowed; use POST")]
    MethodNotAllowed,
    #[error("body larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("the event's body is not valid base64")]
    Undecodable,
    #[error("the body could not be read")]
    Unreadable,
    #[error("the request's host, path or query is malformed")]
    MalformedUri,
    #[error("Content-Type must be application/x-www-form-urlencoded")]
    NotAForm,
    #[error(
        "Content-Type must be application/x-www-form-urlencoded, application/json, \
         application/cloudevents+json or application/cloudevents-batch+json"
    )]
    NotAnEventDelivery,
    #[error(transparent)]
    Form(#[from] CallbackError),
    #[error(transparent)]
    Refused(#[from] Refusal),
}

impl Rejection {
    /// The HTTP status the service answers it with.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::NotFound => StatusCode::NOT_FOUND,
            Rejection::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::Refused(
                Refusal::SignatureMissing
                | Refusal::SignatureInvalid
                | Refusal::OtherAccount
                | Refusal::BodyUnsigned
                | Refusal::BodyMismatch,
            ) => StatusCode::FORBIDDEN,
            Rejection::Refused(Refusal::TokensUnavailable) => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::Undecodable
            | Rejection::MalformedUri
            | Rejection::Unreadable
            | Rejection::NotAForm
            | Rejection::NotAnEventDelivery
            | Rejection::Form(_)
            | Rejection::Refused(Refusal::Callback(_) | Refusal::Events(_)) => {
                StatusCode::BAD_REQUEST
            }
        }
    }
}

impl<S, Q, A, T, R, L> App<S, Q, A, T, R, L>
where
    S: RulesSource,
    Q: QueueDirectory,
    A: TaskAnnotations,
    T: TokenSource,
    R: Recordings,
    L: Ledger,
{
    /// Answers one request. Never fails: every outcome is an HTTP response. A refusal's lines
    /// are rationed ([`refusal_log`]), and so is its metric: it is counted, and the count
    /// written with a later line the ration allows.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        refusal_log::request(self.respond(request)).await
    }

    async fn respond(&self, request: Request) -> Response<Body> {
        let started = std::time::Instant::now();
        let answered = if route_path(&request) == EVENTS_ROUTE {
            // Boxed: enforcement's future is twice the assignment's, and every request's
            // future is as large as its largest path (BENCHMARKS.md, bench (c)).
            Box::pin(self.answer_events(&request, started)).await
        } else {
            self.answer(&request, started)
                .await
                .map(|body| (StatusCode::OK, body))
        };
        match answered {
            Ok((status, body)) => json_response(status, body),
            Err(rejection) => {
                let status = rejection.status();
                if let Some(suppressed) = refusal_log::closing() {
                    tracing::warn!(
                        status = status.as_u16(),
                        error = %rejection,
                        suppressed = (suppressed > 0).then_some(suppressed),
                        "callback rejected"
                    );
                }
                if let Rejection::Refused(refusal) = &rejection
                    && let Some(cause) = refusal.signature_cause()
                {
                    metrics::signature_rejected(cause);
                }
                let body = json!({"error": rejection.to_string()}).to_string();
                let mut response = json_response(status, body);
                if status == StatusCode::METHOD_NOT_ALLOWED {
                    response
                        .headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static("POST"));
                }
                response
            }
        }
    }

    async fn answer(
        &self,
        request: &Request,
        started: std::time::Instant,
    ) -> Result<String, Rejection> {
        let params = form_parameters(request)?;
        // The URL is rebuilt only when a signature will be checked against it.
        let url = match &self.settings.signatures {
            Signatures::Enforce {
                public_url: None, ..
            } => known_url(request),
            _ => Err(UnknownUrl::NoHost),
        };
        let inbound = Inbound {
            params,
            signature: signature(request),
            url,
            request_id: request.lambda_context_ref().map(|c| c.request_id.as_str()),
            started,
        };
        Ok(self.assignment(inbound).await?)
    }

    /// `POST /events`: `200` once every event's work is done, `503` when some is left for a
    /// redelivery (Event Streams delivers again; the Workspace Event Callback waits for the
    /// task's next event).
    async fn answer_events(
        &self,
        request: &Request,
        started: std::time::Instant,
    ) -> Result<(StatusCode, String), Rejection> {
        let delivery = event_delivery(request)?;
        let inbound = EventsInbound {
            delivery,
            signature: signature(request),
            url: known_url(request),
            request_id: request.lambda_context_ref().map(|c| c.request_id.as_str()),
            started,
        };
        let settled = self.events(inbound).await?;
        let status = if settled.unfinished > 0 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        let body = json!({
            "enforced": settled.enforced,
            "ignored": settled.ignored,
            "unreadable": settled.unreadable,
            "unfinished": settled.unfinished,
        });
        Ok((status, body.to_string()))
    }
}

/// The URL the request was called on, as its signature must cover it, or why it is unknown.
fn known_url(request: &Request) -> Result<String, UnknownUrl> {
    called_url(request).ok_or(if rest_api_query(request) {
        UnknownUrl::RestApiQuery
    } else {
        UnknownUrl::NoHost
    })
}

/// The request's `X-Twilio-Signature`. A signature is base64: a header with anything else in
/// it is present but wrong (empty).
fn signature(request: &Request) -> Option<&str> {
    request
        .headers()
        .get("x-twilio-signature")
        .map(|value| value.to_str().unwrap_or_default())
}

/// The checks every face makes on a request before anything in its body is believed, in
/// one order: the URI, the route, the method, the body, its size, its form. Returns the
/// form's parameters, repeats kept.
pub fn form_parameters(request: &Request) -> Result<Vec<(String, String)>, Rejection> {
    let body = accepted_body(request, ROUTE)?;
    if !is_form(request) {
        return Err(Rejection::NotAForm);
    }
    Ok(taskrouter::parse_form(body)?)
}

/// The media types of an Event Streams delivery: Twilio documents `application/json`; the
/// CloudEvents HTTP binding names one event `application/cloudevents+json` and a batch
/// `application/cloudevents-batch+json`. Either shape is read under any of them.
pub const EVENT_STREAMS_MEDIA_TYPES: [&str; 3] = [
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
];

/// The same checks for an event delivery, then its kind by Content-Type: a form (the
/// Workspace Event Callback) or JSON (Event Streams).
pub fn event_delivery(request: &Request) -> Result<Delivery<'_>, Rejection> {
    let body = accepted_body(request, EVENTS_ROUTE)?;
    if is_form(request) {
        return Ok(Delivery::Form(taskrouter::parse_form(body)?));
    }
    if EVENT_STREAMS_MEDIA_TYPES
        .iter()
        .any(|media| content_type_is(request, media))
    {
        return Ok(Delivery::Json(body));
    }
    Err(Rejection::NotAnEventDelivery)
}

/// The URI, the route, the method, the body and its size, in that order; the body.
fn accepted_body<'r>(request: &'r Request, route: &str) -> Result<&'r [u8], Rejection> {
    if request.extensions().get::<BodyProblem>() == Some(&BodyProblem::MalformedUri) {
        return Err(Rejection::MalformedUri);
    }
    if route_path(request) != route {
        return Err(Rejection::NotFound);
    }
    if request.method() != Method::POST {
        return Err(Rejection::MethodNotAllowed);
    }
    match request.extensions().get::<BodyProblem>() {
        Some(BodyProblem::Undecodable) => return Err(Rejection::Undecodable),
        Some(BodyProblem::TooLarge) => return Err(Rejection::TooLarge),
        Some(BodyProblem::Unreadable) => return Err(Rejection::Unreadable),
        Some(BodyProblem::MalformedUri) | None => {}
    }
    let body = request.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(Rejection::TooLarge);
    }
    Ok(body)
}

/// The URL TaskRouter called, rebuilt from the request exactly as sent: scheme
/// (`X-Forwarded-Proto`, else https behind API Gateway and http for `serve`), `Host`, the raw
/// path with any stage, and the raw query string. `None` when it cannot be: no host, or a
/// REST API event with a query string ([`rest_api_query`]).
pub fn called_url(request: &Request) -> Option<String> {
    if rest_api_query(request) {
        return None;
    }
    let headers = request.headers();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (default_scheme, domain, path) = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => (
            "https",
            context.domain_name.as_deref(),
            context.path.as_deref().unwrap_or(request.raw_http_path()),
        ),
        Some(RequestContext::ApiGatewayV2(context)) => (
            "https",
            context.domain_name.as_deref(),
            request.raw_http_path(),
        ),
        _ => ("http", None, request.uri().path()),
    };
    let scheme = header("x-forwarded-proto").unwrap_or(default_scheme);
    let host = header("host").or(domain)?;
    let mut url = format!("{scheme}://{host}{path}");
    if let Some(query) = request.uri().query() {
        url.push('?');
        url.push_str(query);
    }
    Some(url)
}

/// Whether this is a REST API (v1) event with a query string. Such an event carries the
/// query only as decoded values per name (`multiValueQueryStringParameters`), which the
/// runtime writes back re-encoded and in no fixed order: the query TaskRouter signed cannot be
/// rebuilt, and trying would pass or fail a correct signature by chance.
fn rest_api_query(request: &Request) -> bool {
    matches!(
        request.request_context_ref(),
        Some(RequestContext::ApiGatewayV1(_))
    ) && request.uri().query().is_some_and(|query| !query.is_empty())
}

/// The request path without an API Gateway stage prefix.
pub fn route_path(request: &Request) -> &str {
    let path = request.uri().path();
    let stage = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => context.stage.as_deref(),
        Some(RequestContext::ApiGatewayV2(context)) => context.stage.as_deref(),
        _ => None,
    };
    match stage {
        Some(stage) if stage != "$default" && !stage.is_empty() => path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(stage))
            .filter(|rest| rest.starts_with('/'))
            .unwrap_or(path),
        _ => path,
    }
}

fn is_form(request: &Request) -> bool {
    content_type_is(request, "application/x-www-form-urlencoded")
}

/// Whether the request's media type (parameters such as `charset` aside) is `media`, compared
/// without regard to case (RFC 9110, 8.3.1).
fn content_type_is(request: &Request, media: &str) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|found| found.trim().eq_ignore_ascii_case(media))
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `start` would make of the binary's service, without making it.
    fn future_size<'a, Fut: std::future::Future>(
        _start: impl FnOnce(&'a crate::wiring::App) -> Fut,
    ) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// A callback's future is moved whole at each layer between the runtime and the core, so
    /// its size is part of what every callback costs: 50,640 bytes before the slow
    /// paths were boxed (enforcement, the ports' I/O, the caches' refresh), 2,544 after
    /// (BENCHMARKS.md, bench (c)). The bound leaves room for compilers and features, not for
    /// another path's future.
    #[test]
    fn a_callbacks_future_holds_no_slow_paths_future() {
        let started = std::time::Instant::now();
        let handle = future_size(|app| app.handle(Request::default()));
        let assignment = future_size(|app| {
            app.assignment(Inbound {
                params: Vec::new(),
                signature: None,
                url: Err(UnknownUrl::NoHost),
                request_id: None,
                started,
            })
        });
        assert!(handle <= 6 * 1024, "App::handle's future is {handle} bytes");
        assert!(
            assignment <= 4 * 1024,
            "App::assignment's future is {assignment} bytes"
        );
    }

    fn delivery(content_type: &str, body: &str) -> Result<&'static str, Rejection> {
        let request = lambda_http::http::Request::builder()
            .method(Method::POST)
            .uri(EVENTS_ROUTE)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::Text(body.to_owned()))
            .map_err(|_| Rejection::Unreadable)?;
        event_delivery(&request).map(|delivery| match delivery {
            Delivery::Form(_) => "form",
            Delivery::Json(_) => "json",
        })
    }

    #[test]
    fn an_event_streams_delivery_is_json_under_each_of_its_media_types() {
        for content_type in [
            "application/json",
            "application/cloudevents+json",
            "application/cloudevents-batch+json",
            "application/json; charset=utf-8",
            "Application/CloudEvents+JSON;charset=UTF-8",
            "application/cloudevents-batch+json ; charset=\"utf-8\"",
        ] {
            assert_eq!(
                delivery(content_type, "{}").ok(),
                Some("json"),
                "{content_type}"
            );
        }
        assert_eq!(
            delivery("application/x-www-form-urlencoded; charset=utf-8", "a=b").ok(),
            Some("form")
        );
        for other in [
            "text/plain",
            "application/cloudevents",
            "application/json-patch+json",
            "application/jsonx",
            "multipart/form-data",
            "",
        ] {
            let refused = delivery(other, "{}").err();
            assert!(
                matches!(refused, Some(Rejection::NotAnEventDelivery)),
                "{other}: {refused:?}"
            );
            let text = Rejection::NotAnEventDelivery.to_string();
            for media in EVENT_STREAMS_MEDIA_TYPES {
                assert!(text.contains(media), "{text}");
            }
        }
    }
}
