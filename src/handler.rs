//! HTTP in, decision, HTTP out. Shared by Lambda mode and `serve`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Value, json};

use crate::config::AnswerMode;
use crate::metrics::{self, DecisionRecord};
use crate::rules::{self, Arrival, Decision, FailPolicy, Reason};
use crate::signature;
use crate::sources::taskrouter_api::{Annotated, Annotator, QueueNames};
use crate::sources::tokens::TokenSource;
use crate::sources::{LoadedRules, RulesSource};
use crate::taskrouter::{self, Answer, AssignmentCallback, CallbackError, NoInstruction};

/// The one route. A stage prefix (`/Prod/assignment`) is ignored for routing.
pub const ROUTE: &str = "/assignment";
/// Everything before the answer (token and rules refreshes, the queue-name lookup) must be
/// done by then, from the callback's arrival, leaving TaskRouter's 5 s a second of margin.
pub const DECISION_BUDGET: std::time::Duration = std::time::Duration::from_secs(4);
/// In annotate mode the task must be written by then (from the callback's arrival), so the
/// answer still reaches TaskRouter well inside its 5 s.
pub const ANNOTATE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);
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

/// Settings the handler needs besides the rules.
#[derive(Default)]
pub struct Settings {
    pub fail_policy: FailPolicy,
    /// Callbacks for any other account are refused.
    pub account_sid: Option<String>,
    pub signatures: Signatures,
    /// Resolves queue names for rules that name queues; without it such calls follow the
    /// fail policy.
    pub queue_names: Option<QueueNames>,
    pub mode: Mode,
}

/// The answer mode, with what it needs: annotate mode cannot be had without a way to write.
#[derive(Default)]
pub enum Mode {
    /// Answer with the `conference` instruction.
    #[default]
    Conference,
    /// Answer `{}` and write the decision on the task through the annotator.
    Annotate(Annotator),
}

impl Mode {
    pub fn answer_mode(&self) -> AnswerMode {
        match self {
            Mode::Conference => AnswerMode::Conference,
            Mode::Annotate(_) => AnswerMode::Annotate,
        }
    }
}

/// Whether `X-Twilio-Signature` is checked.
#[derive(Default)]
pub enum Signatures {
    /// Any request is answered (local use, or `TWILIO_SIGNATURE_VALIDATION=off`).
    #[default]
    Off,
    Enforce {
        tokens: Arc<TokenSource>,
        /// The only URL a signature may cover; else the URL is rebuilt from the request.
        public_url: Option<String>,
    },
}

/// Everything a request needs, built once at start and shared by every request.
pub struct App<S> {
    pub rules: S,
    pub settings: Settings,
}

/// Why a request gets no decision.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("no such resource; post assignment callbacks to {ROUTE}")]
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
    #[error("X-Twilio-Signature is missing")]
    SignatureMissing,
    #[error("X-Twilio-Signature is not valid for this URL and body")]
    SignatureInvalid,
    #[error("the callback is for another account")]
    OtherAccount,
    #[error("signatures cannot be checked: no auth token is available")]
    TokensUnavailable,
    #[error(transparent)]
    Callback(#[from] CallbackError),
}

impl Rejection {
    /// For the signature-rejection metric: why a callback was refused, if for its signature.
    fn signature_cause(&self) -> Option<&'static str> {
        match self {
            Rejection::SignatureMissing => Some("missing"),
            Rejection::SignatureInvalid => Some("invalid"),
            Rejection::OtherAccount => Some("other_account"),
            _ => None,
        }
    }

    /// The HTTP status the service answers it with.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::NotFound => StatusCode::NOT_FOUND,
            Rejection::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::SignatureMissing | Rejection::SignatureInvalid | Rejection::OtherAccount => {
                StatusCode::FORBIDDEN
            }
            Rejection::TokensUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::Undecodable
            | Rejection::MalformedUri
            | Rejection::Unreadable
            | Rejection::NotAForm
            | Rejection::Callback(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl<S: RulesSource> App<S> {
    /// Answers one request. Never fails: every outcome is an HTTP response.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let started = Instant::now();
        match self.answer(&request, started).await {
            Ok(answer) => json_response(StatusCode::OK, answer),
            Err(rejection) => {
                let status = rejection.status();
                tracing::warn!(status = status.as_u16(), error = %rejection, "callback rejected");
                if let Some(cause) = rejection.signature_cause() {
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

    async fn answer(&self, request: &Request, started: Instant) -> Result<String, Rejection> {
        // Tokens (for the signature) and rules may each need a refresh: side by side, so two
        // slow fetches cost the time of one.
        let (callback, loaded) = tokio::join!(self.accept(request), self.rules.current());
        let callback = callback?;
        let attributes = taskrouter::parse_attributes(&callback.task_attributes);
        let (decision, queue_name) = self
            .decide(&callback, attributes.as_ref(), loaded.as_deref(), started)
            .await;
        let rules_version = loaded.as_ref().and_then(|l| l.version);

        let reason = decision.reason();
        let pass_through = match &loaded {
            Some(loaded) => Cow::Borrowed(loaded.rules.instruction()),
            None => Cow::Owned(serde_json::Map::new()),
        };
        let answer = answer_in(
            self.settings.mode.answer_mode(),
            &decision,
            attributes.as_ref(),
            &pass_through,
        );
        // In annotate mode the decision holds only once it is in the task's attributes (the
        // Flex template records a task without one), so the line says whether it got there,
        // or which earlier decision it found there and kept.
        let (annotation, first) = match (&self.settings.mode, decision) {
            (Mode::Annotate(annotator), Decision::Conference { record, reason }) => {
                let stamp = Stamp {
                    record,
                    reason,
                    rules_version,
                };
                match self
                    .annotate(annotator, &callback, attributes.as_ref(), stamp, started)
                    .await
                {
                    Some(Annotated::Written { .. }) => (Some("written"), None),
                    Some(Annotated::Kept { record }) => {
                        (Some("kept"), Some(rules::record_outcome(record)))
                    }
                    None => (Some("failed"), None),
                }
            }
            _ => (None, None),
        };
        let rule = reason.rule().map(|r| r.to_string());
        metrics::decision(&DecisionRecord {
            task_sid: &callback.task_sid,
            reservation_sid: &callback.reservation_sid,
            task_queue_sid: callback.task_queue_sid.as_deref(),
            queue_name: queue_name.as_deref(),
            workspace_sid: callback.workspace_sid.as_deref(),
            decision: decision.outcome(),
            reason: reason.kind(),
            rule,
            rules_version,
            answer: answer.kind(),
            answer_reason: answer.no_instruction().map(NoInstruction::as_str),
            annotation,
            first,
            elapsed_us: started.elapsed().as_micros() as u64,
            request_id: request.lambda_context_ref().map(|c| c.request_id.as_str()),
            rules_age: self.rules.age(),
        });
        Ok(answer.to_json())
    }

    /// The checks before any decision: [`form_parameters`], then the signature, the account
    /// and the callback's own fields.
    async fn accept(&self, request: &Request) -> Result<AssignmentCallback, Rejection> {
        let params = form_parameters(request)?;
        // The signature first: nothing about the body is answered to an unsigned caller.
        self.check_signature(request, &params).await?;
        if let Some(account) = &self.settings.account_sid
            && taskrouter::single(&params, "AccountSid")? != Some(account.as_str())
        {
            return Err(Rejection::OtherAccount);
        }
        Ok(AssignmentCallback::from_params(params)?)
    }

    /// The decision for an accepted callback, and the queue name when it had to be fetched.
    /// When good rules cannot decide a call, the fail policy does.
    async fn decide(
        &self,
        callback: &AssignmentCallback,
        attributes: Option<&Value>,
        loaded: Option<&LoadedRules>,
        started: Instant,
    ) -> (Decision, Option<Arc<str>>) {
        let policy = self.settings.fail_policy;
        let rules = loaded.map(|l| &l.rules);
        let mut arrival = Arrival {
            attributes,
            queue_sid: callback.task_queue_sid.as_deref(),
            queue_name: None,
            channel: callback.task_channel.as_deref(),
        };
        let decision = rules::decide_arrival(rules, arrival, policy);
        // Only a decision that needs the queue's name asks TaskRouter for it.
        if decision.reason() != Reason::QueueNameUnresolved {
            return (decision, None);
        }
        match self.queue_name(callback, started).await {
            Some(name) => {
                arrival.queue_name = Some(&name);
                let decision = rules::decide_arrival(rules, arrival, policy);
                (decision, Some(name))
            }
            None => (decision, None),
        }
    }
}

/// A decision as it is stamped on a task.
struct Stamp {
    record: bool,
    reason: Reason,
    rules_version: Option<i64>,
}

impl<S> App<S> {
    /// Writes the decision into the task's attributes, within [`ANNOTATE_DEADLINE`] of the
    /// request's start so TaskRouter still gets its answer in time, unless the task already
    /// has a stamp (an earlier reservation's, in the callback's attributes or found on the
    /// task), which is the call's first decision and stays. `None` when the write failed:
    /// that is logged and counted; the answer is `{}` either way.
    async fn annotate(
        &self,
        annotator: &Annotator,
        callback: &AssignmentCallback,
        attributes: Option<&Value>,
        stamp: Stamp,
        started: Instant,
    ) -> Option<Annotated> {
        if let Some(record) = attributes.and_then(taskrouter::stamped_record) {
            return Some(Annotated::Kept { record });
        }
        let decided_at = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
        let annotation = json!({
            "record": stamp.record,
            "reason": stamp.reason.to_string(),
            "rules_version": stamp.rules_version,
            "decided_at": decided_at,
        });
        let left = ANNOTATE_DEADLINE.saturating_sub(started.elapsed());
        let written = annotator.annotate(
            callback.account_sid.as_deref(),
            callback.workspace_sid.as_deref(),
            &callback.task_sid,
            &annotation,
        );
        let cause = match tokio::time::timeout(left, written).await {
            Ok(Ok(annotated)) => {
                if let Annotated::Written { attempts } = annotated {
                    tracing::info!(task_sid = %callback.task_sid, attempts, "task annotated");
                }
                return Some(annotated);
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!(
                "not written within {} ms of the callback",
                ANNOTATE_DEADLINE.as_millis()
            ),
        };
        tracing::warn!(
            task_sid = %callback.task_sid,
            reservation_sid = %callback.reservation_sid,
            record = stamp.record,
            cause = %cause,
            "task annotation failed"
        );
        metrics::annotation_failed();
        None
    }

    /// The task queue's friendly name from TaskRouter, or `None` (logged) when it cannot be
    /// had.
    async fn queue_name(
        &self,
        callback: &AssignmentCallback,
        started: Instant,
    ) -> Option<Arc<str>> {
        let names = self.settings.queue_names.as_ref()?;
        let queue_sid = callback.task_queue_sid.as_deref()?;
        let left = DECISION_BUDGET.saturating_sub(started.elapsed());
        let lookup = names.friendly_name(
            callback.account_sid.as_deref(),
            callback.workspace_sid.as_deref(),
            queue_sid,
        );
        let found = match tokio::time::timeout(left, lookup).await {
            Ok(found) => found.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "no time left: the decision has {} ms in all",
                DECISION_BUDGET.as_millis()
            )),
        };
        match found {
            Ok(name) => Some(name),
            Err(cause) => {
                tracing::warn!(
                    task_sid = %callback.task_sid,
                    task_queue_sid = queue_sid,
                    cause = %cause,
                    "queue name unresolved"
                );
                None
            }
        }
    }

    async fn check_signature(
        &self,
        request: &Request,
        params: &[(String, String)],
    ) -> Result<(), Rejection> {
        let Signatures::Enforce { tokens, public_url } = &self.settings.signatures else {
            return Ok(());
        };
        let signature = request
            .headers()
            .get("x-twilio-signature")
            .ok_or(Rejection::SignatureMissing)?
            // A signature is base64: a header with anything else in it is present but wrong.
            .to_str()
            .map_err(|_| Rejection::SignatureInvalid)?;
        let tokens = tokens.current().await.ok_or(Rejection::TokensUnavailable)?;
        let url = match public_url {
            Some(url) => Cow::Borrowed(url.as_str()),
            None => match called_url(request) {
                Some(url) => Cow::Owned(url),
                None if rest_api_query(request) => {
                    tracing::warn!(
                        "the callback came through a REST API (v1) with a query string, which \
                         API Gateway does not pass on as sent, so its signature cannot be \
                         checked: set PUBLIC_URL to the callback URL"
                    );
                    return Err(Rejection::SignatureInvalid);
                }
                None => return Err(Rejection::SignatureInvalid),
            },
        };
        if signature::is_valid(tokens.as_slice(), &url, params, signature) {
            Ok(())
        } else {
            // The URL without its query (which may carry a secret) tells an operator which
            // URL the signature was checked against.
            let checked = without_secrets(&url);
            tracing::warn!(
                url = %checked,
                "signature does not match; is PUBLIC_URL or the callback URL in TaskRouter different?"
            );
            Err(Rejection::SignatureInvalid)
        }
    }
}

/// The checks every face makes on a request before anything in its body is believed, in
/// one order: the URI, the route, the method, the body, its size, its form. Returns the
/// form's parameters, repeats kept.
pub fn form_parameters(request: &Request) -> Result<Vec<(String, String)>, Rejection> {
    if request.extensions().get::<BodyProblem>() == Some(&BodyProblem::MalformedUri) {
        return Err(Rejection::MalformedUri);
    }
    if route_path(request) != ROUTE {
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
    if !is_form(request) {
        return Err(Rejection::NotAForm);
    }
    Ok(taskrouter::parse_form(body)?)
}

/// The answer to TaskRouter in an answer mode: in annotate mode always `{}` (the agent
/// accepts in the Flex UI), else [`taskrouter::answer`].
pub fn answer_in<'a>(
    mode: AnswerMode,
    decision: &Decision,
    attributes: Option<&Value>,
    pass_through: &'a serde_json::Map<String, Value>,
) -> Answer<'a> {
    match (mode, decision) {
        (AnswerMode::Conference, _) => taskrouter::answer(decision, attributes, pass_through),
        (AnswerMode::Annotate, Decision::NotACall) => Answer::Nothing(NoInstruction::NotACall),
        (AnswerMode::Annotate, Decision::Conference { .. }) => {
            Answer::Nothing(NoInstruction::AnnotateMode)
        }
    }
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

/// The URL as it may be logged: no query (it may carry a secret) and no `user:password@`.
fn without_secrets(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if scheme.is_empty() {
        format!("{host}{path}")
    } else {
        format!("{scheme}://{host}{path}")
    }
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
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
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
    use super::without_secrets;

    #[test]
    fn a_logged_url_has_no_query_and_no_password() {
        let cases = [
            (
                "https://twilio:S3cret@cr.example.com/assignment?key=k",
                "https://cr.example.com/assignment",
            ),
            (
                "https://a:b@c@h.example:8443/p#f",
                "https://h.example:8443/p",
            ),
            (
                "http://127.0.0.1:3000/assignment",
                "http://127.0.0.1:3000/assignment",
            ),
            ("https://h.example?x=1", "https://h.example"),
            ("no scheme@host/p?q", "host/p"),
        ];
        for (url, logged) in cases {
            assert_eq!(without_secrets(url), logged, "{url}");
        }
    }
}
