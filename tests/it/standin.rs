//! A local stand-in for Twilio's TaskRouter and Voice REST APIs: a hyper (HTTP/1.1, keep-alive) server
//! on 127.0.0.1 (port 0), on a tokio runtime of its own on a background thread, that speaks
//! the documented resources with Twilio's JSON shapes, checks HTTP Basic credentials,
//! injects faults on demand, and records every request so tests can count calls. It stops
//! when dropped: no new connections, and every open one closed, hanging requests unanswered.
//!
//! Resources: `GET /v1/Workspaces/{WorkspaceSid}/TaskQueues/{TaskQueueSid}`, and
//! `GET`/`POST /v1/Workspaces/{WorkspaceSid}/Tasks/{TaskSid}` with Twilio's optimistic
//! concurrency: every Task answer carries an `ETag` (its revision), a `POST` whose
//! `If-Match` names another revision is refused with `412`, and `attributes` is a JSON
//! string, as Twilio returns it. Tests can change a task behind the client's back right
//! after serving it ([`StandIn::on_next_get`]), the way a concurrent writer would.
//!
//! Voice API resources (`/2010-04-01/Accounts/{AccountSid}/...`, for enforcement): the
//! in-progress conference by `FriendlyName` and `Status` (`Conferences.json`), a conference's
//! participants, a conference's and a call's recordings (lists in Twilio's paged envelope,
//! followed through `next_page_uri`), stopping or pausing a recording (`POST` with
//! `Status=stopped`, or `Status=paused`) and deleting one (`DELETE Recordings/{RE}.json`,
//! `204`). Another resource is one more [`Resource`] variant and one more arm in
//! [`Shared::route`].
//!
//! It can also answer as Twilio has been seen to in the field: conference recordings that
//! refuse `Status=stopped` but accept `Status=paused` ([`StandIn::refuse_conference_stops`]),
//! pauses refused too ([`StandIn::refuse_pauses`]), recordings `processing` once their call
//! ends ([`StandIn::end_conference`]), and a list entry with a field `null`
//! ([`StandIn::null_field`]).
//!
//! For reconciliation: the account's recordings (`GET Recordings.json`, newest first, with
//! `DateCreated>`/`DateCreated<` date filters and paging), one conference
//! (`GET Conferences/{CF}.json`), recordings made at a given time by a given source
//! ([`StandIn::add_recording_at`]), a fault on the Nth request of a route
//! ([`StandIn::fail_nth_at`]), and the most requests it was ever answering at once
//! ([`StandIn::most_in_flight`]).

// Each test crate uses a different part of this module.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::{Callback, Http, InProcess, Logs, Response, TOKEN, TempDir};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

/// The account a queue reports when the caller authenticated with an API key.
pub const KEY_ACCOUNT_SID: &str = "AC00000000000000000000000000000000";
/// The Activities a queue points its workers to.
const ASSIGNMENT_ACTIVITY_SID: &str = "WA11111111111111111111111111111111";
const RESERVATION_ACTIVITY_SID: &str = "WA22222222222222222222222222222222";
/// Timestamps of every queue, in the ISO 8601 form TaskRouter uses.
const CREATED: &str = "2025-03-04T09:15:00Z";
/// Where every task added by [`StandIn::add_task`] is routed.
pub const TASK_QUEUE_SID: &str = "WQ33333333333333333333333333333333";
pub const WORKFLOW_SID: &str = "WW44444444444444444444444444444444";
const TASK_CHANNEL_SID: &str = "TC55555555555555555555555555555555";
/// A task's lifetime when its Workflow sets none (TaskRouter's default).
const TASK_TIMEOUT_SECONDS: u64 = 86_400;

/// The largest request head or body read; the product's requests are tiny.
const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// How long the accept loop waits after a failed accept (out of file descriptors, say)
/// before it tries again, rather than spinning.
const ACCEPT_RETRY: Duration = Duration::from_millis(20);

/// What the stand-in does instead of serving a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answers with this status and Twilio's error JSON for it (401, 404, 429, 500, 503...).
    Status(u16),
    /// `429 Too Many Requests`, with this `Retry-After` value when given.
    RateLimited(Option<String>),
    /// Reads the request and never answers, until the stand-in stops.
    Hang,
    /// Serves the request as usual (any change it makes is made at once), but answers only
    /// after this long.
    Delay(Duration),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    /// From `Authorization: Basic`, decoded; `None` when absent or not Basic.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status the stand-in answered (or, for a [`Fault::Delay`], will answer) with;
    /// `None` for a hang.
    pub answered: Option<u16>,
    /// The `ETag` the stand-in answered with, if any.
    pub answered_etag: Option<String>,
    /// When it was read.
    pub received: Instant,
}

impl Recorded {
    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body's `application/x-www-form-urlencoded` pairs, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    /// The first value of a form field in the body.
    pub fn form_value(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Everything the client sent, as text: for checks that something was never sent.
    pub fn text(&self) -> String {
        let mut text = format!("{} {}\n", self.method, self.target);
        for (name, value) in &self.headers {
            text.push_str(&format!("{name}: {value}\n"));
        }
        text.push('\n');
        text.push_str(&String::from_utf8_lossy(&self.body));
        text
    }
}

/// The stand-in. Configure it, point the product at [`StandIn::base_url`], read
/// [`StandIn::requests`].
pub struct StandIn {
    shared: Arc<Shared>,
    /// Dropped to stop the server: its accept loop ends on it.
    stop: Option<oneshot::Sender<()>>,
    /// The thread that owns the runtime; joined on drop.
    server: Option<JoinHandle<()>>,
}

impl StandIn {
    /// Listens on 127.0.0.1, port 0, with no queues and no accepted credentials.
    pub fn start() -> StandIn {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .unwrap_or_else(|e| panic!("the stand-in has no runtime: {e}"));
        let listener = listen(&runtime);
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the stand-in has no address: {e}"));
        let shared = Arc::new(Shared {
            base_url: format!("http://{addr}"),
            state: Mutex::new(State::default()),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
        });
        let (stop, stopped) = oneshot::channel();
        let server = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("standin".to_owned())
                .spawn(move || run(runtime, listener, shared, stopped))
                .unwrap_or_else(|e| panic!("the stand-in has no thread: {e}"))
        };
        StandIn {
            shared,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash: the value for `TWILIO_API_BASE_URL`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Adds a TaskQueue, or renames it when it exists.
    pub fn add_queue(&self, workspace_sid: &str, queue_sid: &str, friendly_name: &str) {
        self.shared.state().queues.insert(
            (workspace_sid.to_owned(), queue_sid.to_owned()),
            friendly_name.to_owned(),
        );
    }

    /// Accepts only this pair from now on.
    pub fn set_credentials(&self, username: &str, password: &str) {
        let mut state = self.shared.state();
        state.credentials.clear();
        state
            .credentials
            .push((username.to_owned(), password.to_owned()));
    }

    /// Accepts this pair as well as those already accepted.
    pub fn add_credentials(&self, username: &str, password: &str) {
        self.shared
            .state()
            .credentials
            .push((username.to_owned(), password.to_owned()));
    }

    /// The next `n` requests get `fault` (before any queued by an earlier call run out).
    pub fn fail_next(&self, n: usize, fault: Fault) {
        let mut state = self.shared.state();
        state.next_faults.extend(std::iter::repeat_n(fault, n));
    }

    /// Every request gets `fault` (after any from [`StandIn::fail_next`]); `None` heals.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.shared.state().fault = fault;
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.state().requests.clone()
    }

    /// The requests for one TaskQueue.
    pub fn queue_requests(&self, workspace_sid: &str, queue_sid: &str) -> Vec<Recorded> {
        let path = queue_path(workspace_sid, queue_sid);
        self.requests()
            .into_iter()
            .filter(|r| r.path() == path)
            .collect()
    }

    /// Adds a pending Task with these attributes (the JSON text, stored as it is, the way
    /// TaskRouter keeps what it was given), or replaces one, at a new revision.
    pub fn add_task(&self, workspace_sid: &str, task_sid: &str, attributes: &str) {
        let mut state = self.shared.state();
        let revision = state.next_revision();
        state.tasks.insert(
            task_key(workspace_sid, task_sid),
            Task::new(attributes.to_owned(), revision),
        );
    }

    /// Completes and deletes a Task: TaskRouter answers `404` for it from now on.
    pub fn remove_task(&self, workspace_sid: &str, task_sid: &str) {
        self.shared
            .state()
            .tasks
            .remove(&task_key(workspace_sid, task_sid));
    }

    /// A Task's attributes as stored (a JSON string); `None` when there is no such task.
    pub fn task_attributes_text(&self, workspace_sid: &str, task_sid: &str) -> Option<String> {
        self.shared
            .state()
            .tasks
            .get(&task_key(workspace_sid, task_sid))
            .map(|task| task.attributes.clone())
    }

    /// A Task's attributes, parsed; `None` when there is no such task. Panics when what is
    /// stored is not JSON (the stand-in refuses such writes, so a test stored it).
    pub fn task_attributes(&self, workspace_sid: &str, task_sid: &str) -> Option<Value> {
        let text = self.task_attributes_text(workspace_sid, task_sid)?;
        Some(
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("the task's attributes are not JSON ({e}): {text}")),
        )
    }

    /// Right after the next `GET` of the Task is answered (with its attributes and ETag as
    /// they were), another writer edits its attributes: `edit` runs on them, parsed, and
    /// the task moves to a new revision. The client's next `POST` with the ETag it just
    /// got is then refused with `412`. Edits queue up, one per `GET`.
    pub fn on_next_get(
        &self,
        workspace_sid: &str,
        task_sid: &str,
        edit: impl FnOnce(&mut Value) + Send + 'static,
    ) {
        self.after_next_get(workspace_sid, task_sid, AfterGet::Edit(Box::new(edit)));
    }

    /// Right after the next `GET` of the Task, it is completed and deleted: the client's
    /// `POST` gets `404`.
    pub fn remove_after_next_get(&self, workspace_sid: &str, task_sid: &str) {
        self.after_next_get(workspace_sid, task_sid, AfterGet::Remove);
    }

    fn after_next_get(&self, workspace_sid: &str, task_sid: &str, change: AfterGet) {
        self.shared
            .state()
            .after_get
            .entry(task_key(workspace_sid, task_sid))
            .or_default()
            .push_back(change);
    }

    /// `true`: every `POST` to a Task is refused with `412`, as if another writer always
    /// got there first (each refusal moves the task to a new revision). `false` heals.
    pub fn reject_task_writes_as_stale(&self, stale: bool) {
        self.shared.state().stale_writes = stale;
    }

    /// The next `n` requests with this method (`GET`, `POST`) get `fault`, after any queued
    /// by [`StandIn::fail_next`] and before one set by [`StandIn::set_fault`].
    pub fn fail_next_method(&self, method: &str, n: usize, fault: Fault) {
        self.shared
            .state()
            .method_faults
            .entry(method.to_ascii_uppercase())
            .or_default()
            .extend(std::iter::repeat_n(fault, n));
    }

    /// The next `n` requests with this method whose path starts with `path_prefix` get
    /// `fault` (one route failing, the others served), after any queued by
    /// [`StandIn::fail_next`] and before those of [`StandIn::fail_next_method`].
    pub fn fail_next_at(&self, method: &str, path_prefix: &str, n: usize, fault: Fault) {
        let mut state = self.shared.state();
        let route = (method.to_ascii_uppercase(), path_prefix.to_owned());
        state
            .route_faults
            .extend(std::iter::repeat_n((route, fault), n));
    }

    /// The requests for one Task.
    pub fn task_requests(&self, workspace_sid: &str, task_sid: &str) -> Vec<Recorded> {
        let path = task_path(workspace_sid, task_sid);
        self.requests()
            .into_iter()
            .filter(|r| r.path() == path)
            .collect()
    }

    /// Adds a conference of the account (`status`: `init`, `in-progress`, `completed`), or
    /// replaces one with the same SID, keeping its participants. TaskRouter names the
    /// conference of a task after it: `friendly_name` is then the TaskSid.
    pub fn add_conference(&self, account_sid: &str, sid: &str, friendly_name: &str, status: &str) {
        let mut state = self.shared.state();
        let participants = match state.conferences.iter().position(|c| c.sid == sid) {
            Some(at) => state.conferences.remove(at).participants,
            None => Vec::new(),
        };
        state.conferences.push(Conference {
            account: account_sid.to_owned(),
            sid: sid.to_owned(),
            friendly_name: friendly_name.to_owned(),
            status: status.to_owned(),
            participants,
            date_created: rfc2822(SystemTime::now()),
        });
    }

    /// Puts a call in a conference added before (a test's mistake otherwise: it panics).
    pub fn add_participant(&self, conference_sid: &str, call_sid: &str) {
        let mut state = self.shared.state();
        let conference = state
            .conferences
            .iter_mut()
            .find(|c| c.sid == conference_sid)
            .unwrap_or_else(|| panic!("add conference {conference_sid} before its participants"));
        conference.participants.push(call_sid.to_owned());
    }

    /// Adds a recording of the account's conference or call with this `status`
    /// (`in-progress`, `paused`, `stopped`, `processing`, `completed`, `absent`).
    pub fn add_recording(&self, account_sid: &str, of: Of, sid: &str, status: &str) {
        self.add_recording_at(account_sid, of, sid, status, SystemTime::now(), None);
    }

    /// Adds a recording made at `created` (its `date_created`, whole seconds), by `source`
    /// when given (`RecordVerb` for an IVR's `<Record>`, `DialVerb`, `Trunking`...; else the
    /// API that starts a conference's or a call's recording).
    pub fn add_recording_at(
        &self,
        account_sid: &str,
        of: Of,
        sid: &str,
        status: &str,
        created: SystemTime,
        source: Option<&str>,
    ) {
        self.shared.state().recordings.push(VoiceRecording {
            account: account_sid.to_owned(),
            sid: sid.to_owned(),
            of,
            status: status.to_owned(),
            created: Instant::now(),
            created_at: created,
            date_created: rfc2822(created),
            source: source.map(str::to_owned),
            media_url: None,
        });
    }

    /// A recording's `status`; `None` once it is deleted (or was never added).
    pub fn recording_status(&self, sid: &str) -> Option<String> {
        let state = self.shared.state();
        let recording = state.recordings.iter().find(|r| r.sid == sid)?;
        Some(recording.status.clone())
    }

    /// The recording's audio is at `url` (Twilio's external storage writes it to the
    /// customer's S3 bucket and lists it there).
    pub fn set_media_url(&self, sid: &str, url: &str) {
        let mut state = self.shared.state();
        if let Some(recording) = state.recordings.iter_mut().find(|r| r.sid == sid) {
            recording.media_url = Some(url.to_owned());
        }
    }

    /// Moves a recording on, as Twilio does after a stop (`processing`, then `completed`).
    pub fn set_recording_status(&self, sid: &str, status: &str) {
        let mut state = self.shared.state();
        if let Some(recording) = state.recordings.iter_mut().find(|r| r.sid == sid) {
            recording.status = status.to_owned();
        }
    }

    /// What a stop leaves a recording in from now on: `stopped` (the default), or
    /// `processing`, as Twilio's is for a while after the stop (it then refuses a delete
    /// until a test moves it on with [`StandIn::set_recording_status`]).
    pub fn leave_stopped_recordings(&self, status: &str) {
        self.shared.state().stopped_status = Some(status.to_owned());
    }

    /// From now on a conference recording refuses `Status=stopped` with `400` and Twilio's
    /// error 21220, whatever its status, and still accepts `Status=paused`: what teams have
    /// seen in the field. A call's recordings stop as before.
    pub fn refuse_conference_stops(&self) {
        self.shared.state().refuse_conference_stops = true;
    }

    /// From now on every recording refuses `Status=paused` with `400` and error 21220.
    pub fn refuse_pauses(&self) {
        self.shared.state().refuse_pauses = true;
    }

    /// The conference ends, and its calls with it: its recordings and its participants',
    /// unless finished, are `processing` (Twilio then refuses to delete them) until a test
    /// moves them on with [`StandIn::set_recording_status`].
    pub fn end_conference(&self, sid: &str) {
        let mut state = self.shared.state();
        let Some(conference) = state.conferences.iter_mut().find(|c| c.sid == sid) else {
            panic!("add conference {sid} before it ends");
        };
        conference.status = "completed".to_owned();
        let calls = conference.participants.clone();
        for recording in &mut state.recordings {
            let of_the_call = match &recording.of {
                Of::Conference(of) => of == sid,
                Of::Call(of) => calls.contains(of),
            };
            let running = matches!(
                recording.status.as_str(),
                "in-progress" | "paused" | "stopped"
            );
            if of_the_call && running {
                recording.status = "processing".to_owned();
            }
        }
    }

    /// In every page of the list `list` (`conferences`, `participants`, `recordings`), the
    /// entry of `item` (its SID; a participant's call SID) has `field` `null`.
    pub fn null_field(&self, list: &str, item: &str, field: &str) {
        let key = (list.to_owned(), item.to_owned(), field.to_owned());
        self.shared.state().nulled.push(key);
    }

    /// The `nth` request (1 for the next) from now on whose method is `method` and whose
    /// path starts with `path_prefix` gets `fault`; those before it are served as usual.
    pub fn fail_nth_at(&self, method: &str, path_prefix: &str, nth: usize, fault: Fault) {
        let route = (method.to_ascii_uppercase(), path_prefix.to_owned());
        self.shared
            .state()
            .nth_faults
            .push((route, nth.saturating_sub(1), fault));
    }

    /// The most requests the stand-in was answering at once (from reading a request to
    /// sending its answer, delays included) since it started.
    pub fn most_in_flight(&self) -> usize {
        self.shared.most_in_flight.load(Ordering::SeqCst)
    }

    /// The requests whose method is `method` and whose path starts with `path_prefix`.
    pub fn requests_at(&self, method: &str, path_prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path().starts_with(path_prefix))
            .collect()
    }

    /// Every Voice API page holds at most `n` items from now on, whatever `PageSize` asks:
    /// short lists then span several pages.
    pub fn cap_page_size(&self, n: usize) {
        self.shared.state().page_size_cap = Some(n.max(1));
    }

    /// The requests to the Voice API, in arrival order.
    pub fn voice_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path().starts_with(VOICE_PREFIX))
            .collect()
    }
}

/// What a recording belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Of {
    /// A conference (`CF...`).
    Conference(String),
    /// A call (`CA...`).
    Call(String),
}

impl Of {
    /// The other SID a Twilio recording names: `(conference_sid, call_sid)`.
    fn sids(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Of::Conference(sid) => (Some(sid), None),
            Of::Call(sid) => (None, Some(sid)),
        }
    }
}

impl Drop for StandIn {
    /// Stops the server and waits for its thread, which then has nothing left to wait for:
    /// the accept loop ends at once, and dropping the runtime closes every connection.
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(server) = self.server.take() {
            // All a failed join could carry is a panic, already printed with its message.
            let _ = server.join();
        }
    }
}

/// `/v1/Workspaces/{WorkspaceSid}/TaskQueues/{TaskQueueSid}`.
pub fn queue_path(workspace_sid: &str, queue_sid: &str) -> String {
    format!("/v1/Workspaces/{workspace_sid}/TaskQueues/{queue_sid}")
}

/// `/v1/Workspaces/{WorkspaceSid}/Tasks/{TaskSid}`.
pub fn task_path(workspace_sid: &str, task_sid: &str) -> String {
    format!("/v1/Workspaces/{workspace_sid}/Tasks/{task_sid}")
}

/// A time as the Voice API (`2010-04-01`) writes it: RFC 2822, UTC
/// (`Tue, 04 Mar 2025 09:15:00 +0000`).
fn rfc2822(time: SystemTime) -> String {
    httpdate::fmt_http_date(time).replace(" GMT", " +0000")
}

/// A time as TaskRouter writes it: ISO 8601 / RFC 3339, UTC, whole seconds
/// (`2025-03-04T09:15:00Z`).
pub fn iso8601(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let days = i64::try_from(seconds / 86_400).unwrap_or_default();
    let of_day = seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

// ---------------------------------------------------------------------------------------
// State and routing

struct Shared {
    base_url: String,
    state: Mutex<State>,
    /// Requests being answered now, and the most there ever were.
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

#[derive(Default)]
struct State {
    /// (WorkspaceSid, TaskQueueSid) -> friendly_name.
    queues: HashMap<(String, String), String>,
    /// (WorkspaceSid, TaskSid) -> the task.
    tasks: HashMap<(String, String), Task>,
    /// The last revision given to any task; revisions never repeat, so an ETag from a
    /// deleted and re-added task never matches by accident.
    revision: u64,
    /// Changes another writer makes right after the next `GET` of a task.
    after_get: HashMap<(String, String), VecDeque<AfterGet>>,
    /// Every task `POST` is refused with `412`.
    stale_writes: bool,
    /// Accepted (username, password) pairs.
    credentials: Vec<(String, String)>,
    next_faults: VecDeque<Fault>,
    /// Method -> faults for the next requests with that method.
    method_faults: HashMap<String, VecDeque<Fault>>,
    /// ((method, path prefix), fault) for the next requests on that route, in order.
    route_faults: Vec<((String, String), Fault)>,
    /// ((method, path prefix), requests still to pass, fault): a fault further down a route.
    nth_faults: Vec<((String, String), usize, Fault)>,
    /// The status a stop leaves a recording in, when not `stopped`.
    stopped_status: Option<String>,
    fault: Option<Fault>,
    requests: Vec<Recorded>,
    /// Voice API conferences, in the order they were added.
    conferences: Vec<Conference>,
    /// Voice API recordings, in the order they were added; a deleted one is removed.
    recordings: Vec<VoiceRecording>,
    /// The most items a Voice API page holds, when a test set it.
    page_size_cap: Option<usize>,
    /// Conference recordings refuse `Status=stopped`.
    refuse_conference_stops: bool,
    /// Recordings refuse `Status=paused`.
    refuse_pauses: bool,
    /// (list, item, field): a field written `null` in a list's entry.
    nulled: Vec<(String, String, String)>,
}

impl State {
    fn next_revision(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }
}

fn task_key(workspace_sid: &str, task_sid: &str) -> (String, String) {
    (workspace_sid.to_owned(), task_sid.to_owned())
}

/// A Task as the stand-in keeps it.
struct Task {
    /// The JSON string TaskRouter stores and returns.
    attributes: String,
    revision: u64,
    assignment_status: String,
    priority: u64,
    reason: Option<String>,
    task_channel_unique_name: String,
    created: Instant,
    date_created: String,
    date_updated: String,
}

impl Task {
    fn new(attributes: String, revision: u64) -> Task {
        let now = iso8601(SystemTime::now());
        Task {
            attributes,
            revision,
            assignment_status: "reserved".to_owned(),
            priority: 0,
            reason: None,
            task_channel_unique_name: "voice".to_owned(),
            created: Instant::now(),
            date_created: now.clone(),
            date_updated: now,
        }
    }

    /// The `ETag` of the current revision.
    fn etag(&self) -> String {
        self.revision.to_string()
    }

    /// Moves to a new revision, as every accepted write does.
    fn touch(&mut self, revision: u64) {
        self.revision = revision;
        self.date_updated = iso8601(SystemTime::now());
    }
}

/// A Voice API conference.
struct Conference {
    account: String,
    sid: String,
    friendly_name: String,
    status: String,
    /// The participants' call SIDs.
    participants: Vec<String>,
    date_created: String,
}

/// A Voice API recording.
struct VoiceRecording {
    account: String,
    sid: String,
    of: Of,
    status: String,
    created: Instant,
    /// When it was made: `date_created`, and what the list's date filters compare.
    created_at: SystemTime,
    date_created: String,
    /// `source`, when a test set one.
    source: Option<String>,
    /// `media_url`, when a test set one (external storage); else Twilio's own.
    media_url: Option<String>,
}

/// What another writer does to a task right after a `GET` of it.
enum AfterGet {
    Edit(Box<dyn FnOnce(&mut Value) + Send>),
    Remove,
}

/// A resource the stand-in serves, parsed from a path.
enum Resource<'a> {
    TaskQueue {
        workspace: &'a str,
        queue: &'a str,
    },
    Task {
        workspace: &'a str,
        task: &'a str,
    },
    /// `/2010-04-01/Accounts/{AC}/Conferences.json`.
    Conferences {
        account: &'a str,
    },
    /// `.../Conferences/{CF}.json`.
    Conference {
        account: &'a str,
        conference: &'a str,
    },
    /// `.../Recordings.json`: every recording of the account.
    AccountRecordings {
        account: &'a str,
    },
    /// `.../Conferences/{CF}/Participants.json`.
    Participants {
        account: &'a str,
        conference: &'a str,
    },
    /// `.../Conferences/{CF}/Recordings.json`, `.../Calls/{CA}/Recordings.json`.
    RecordingsOf {
        account: &'a str,
        of: Of,
    },
    /// `.../Conferences/{CF}/Recordings/{RE}.json`, `.../Calls/{CA}/Recordings/{RE}.json`.
    RecordingOf {
        account: &'a str,
        of: Of,
        recording: &'a str,
    },
    /// `.../Recordings/{RE}.json`.
    Recording {
        account: &'a str,
        recording: &'a str,
    },
}

/// Where the Voice API's paths start.
const VOICE_PREFIX: &str = "/2010-04-01/Accounts/";

impl<'a> Resource<'a> {
    fn parse(path: &'a str) -> Option<Resource<'a>> {
        let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        match segments.as_slice() {
            ["v1", "Workspaces", workspace, "TaskQueues", queue] => {
                Some(Resource::TaskQueue { workspace, queue })
            }
            ["v1", "Workspaces", workspace, "Tasks", task] => {
                Some(Resource::Task { workspace, task })
            }
            ["2010-04-01", "Accounts", account, rest @ ..] => Resource::voice(account, rest),
            _ => None,
        }
    }

    /// The account in a Voice API resource's path; `None` for TaskRouter's.
    fn voice_account(&self) -> Option<&'a str> {
        match self {
            Resource::TaskQueue { .. } | Resource::Task { .. } => None,
            Resource::Conferences { account }
            | Resource::Conference { account, .. }
            | Resource::AccountRecordings { account }
            | Resource::Participants { account, .. }
            | Resource::RecordingsOf { account, .. }
            | Resource::RecordingOf { account, .. }
            | Resource::Recording { account, .. } => Some(account),
        }
    }

    /// A Voice API resource of the account, from the segments after its SID.
    fn voice(account: &'a str, rest: &[&'a str]) -> Option<Resource<'a>> {
        let of = |kind: &str, sid: &str| match kind {
            "Conferences" => Some(Of::Conference(sid.to_owned())),
            "Calls" => Some(Of::Call(sid.to_owned())),
            _ => None,
        };
        match rest {
            ["Conferences.json"] => Some(Resource::Conferences { account }),
            ["Recordings.json"] => Some(Resource::AccountRecordings { account }),
            ["Conferences", conference] => Some(Resource::Conference {
                account,
                conference: conference.strip_suffix(".json")?,
            }),
            ["Conferences", conference, "Participants.json"] => Some(Resource::Participants {
                account,
                conference,
            }),
            [kind, sid, "Recordings.json"] => Some(Resource::RecordingsOf {
                account,
                of: of(kind, sid)?,
            }),
            [kind, sid, "Recordings", recording] => Some(Resource::RecordingOf {
                account,
                of: of(kind, sid)?,
                recording: recording.strip_suffix(".json")?,
            }),
            ["Recordings", recording] => Some(Resource::Recording {
                account,
                recording: recording.strip_suffix(".json")?,
            }),
            _ => None,
        }
    }
}

/// What a connection does with a request.
enum Action {
    Reply(Reply),
    /// This reply, after this long.
    Later(Duration, Reply),
    Hang,
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    /// JSON; `None` for an answer with no body (`204`).
    body: Option<Value>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    /// `204 No Content`, the answer to a `DELETE` that worked.
    fn no_content() -> Reply {
        Reply {
            status: 204,
            headers: Vec::new(),
            body: None,
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the request and what it was answered.
    fn respond(&self, request: Recorded) -> Action {
        let mut state = self.state();
        let index = state.requests.len();
        state.requests.push(request.clone());
        let action = self.act(&mut state, &request);
        if let Action::Reply(reply) | Action::Later(_, reply) = &action {
            let recorded = &mut state.requests[index];
            recorded.answered = Some(reply.status);
            recorded.answered_etag = reply
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("ETag"))
                .map(|(_, value)| value.clone());
        }
        action
    }

    /// Applies a fault, the credentials check and the route.
    fn act(&self, state: &mut State, request: &Recorded) -> Action {
        let on_route = |((method, prefix), _): &((String, String), Fault)| {
            *method == request.method && request.path().starts_with(prefix.as_str())
        };
        let fault = state
            .next_faults
            .pop_front()
            .or_else(|| {
                let at = state.route_faults.iter().position(on_route)?;
                Some(state.route_faults.remove(at).1)
            })
            .or_else(|| {
                let mut due = None;
                for (at, ((method, prefix), pass, _)) in state.nth_faults.iter_mut().enumerate() {
                    if *method == request.method && request.path().starts_with(prefix.as_str()) {
                        if *pass == 0 {
                            due = Some(at);
                            break;
                        }
                        *pass -= 1;
                    }
                }
                due.map(|at| state.nth_faults.remove(at).2)
            })
            .or_else(|| {
                state
                    .method_faults
                    .get_mut(&request.method)
                    .and_then(VecDeque::pop_front)
            })
            .or_else(|| state.fault.clone());
        let delay = match fault {
            Some(Fault::Hang) => return Action::Hang,
            Some(Fault::Status(status)) => {
                return Action::Reply(error_for_status(status, request.path()));
            }
            Some(Fault::RateLimited(retry_after)) => {
                let reply = error_for_status(429, request.path());
                return Action::Reply(match retry_after {
                    Some(seconds) => reply.header("Retry-After", seconds),
                    None => reply,
                });
            }
            Some(Fault::Delay(delay)) => Some(delay),
            None => None,
        };
        let reply = match authenticate(state, request) {
            Some(account) => self.route(state, request, &account),
            None => unauthorized(),
        };
        match delay {
            Some(delay) => Action::Later(delay, reply),
            None => Action::Reply(reply),
        }
    }

    fn route(&self, state: &mut State, request: &Recorded, account: &str) -> Reply {
        let path = request.path();
        let Some(resource) = Resource::parse(path) else {
            return not_found(path);
        };
        // Another account's Voice resources do not exist for this one (the stand-in knows no
        // subaccounts).
        if resource
            .voice_account()
            .is_some_and(|owner| owner != account)
        {
            return not_found(path);
        }
        match (resource, request.method.as_str()) {
            (Resource::TaskQueue { workspace, queue }, "GET") => {
                match state.queues.get(&(workspace.to_owned(), queue.to_owned())) {
                    Some(name) => {
                        Reply::json(200, self.task_queue(account, workspace, queue, name))
                    }
                    None => not_found(path),
                }
            }
            (Resource::Task { workspace, task }, "GET") => {
                self.fetch_task(state, account, workspace, task)
            }
            (Resource::Task { workspace, task }, "POST") => {
                self.update_task(state, request, account, workspace, task)
            }
            (Resource::Conferences { .. }, "GET") => self.list_conferences(state, request, account),
            (Resource::Conference { conference, .. }, "GET") => state
                .conferences
                .iter()
                .find(|c| c.account == account && c.sid == conference)
                .map_or_else(|| not_found(path), |c| Reply::json(200, conference_json(c))),
            (Resource::AccountRecordings { .. }, "GET") => {
                list_account_recordings(state, request, account)
            }
            (Resource::Participants { conference, .. }, "GET") => {
                self.list_participants(state, request, account, conference)
            }
            (Resource::RecordingsOf { of, .. }, "GET") => {
                self.list_recordings(state, request, account, &of)
            }
            (Resource::RecordingOf { of, recording, .. }, "POST") => {
                self.update_recording(state, request, account, &of, recording)
            }
            (Resource::Recording { recording, .. }, "DELETE") => {
                delete_recording(state, account, recording, path)
            }
            _ => twilio_error(405, 20004, "Method not allowed"),
        }
    }

    /// `GET` a Task: the resource and its `ETag`, then whatever another writer does next.
    fn fetch_task(&self, state: &mut State, account: &str, workspace: &str, task: &str) -> Reply {
        let key = task_key(workspace, task);
        let Some(stored) = state.tasks.get(&key) else {
            return not_found(&task_path(workspace, task));
        };
        let reply = Reply::json(200, self.task(account, workspace, task, stored))
            .header("ETag", stored.etag());
        let change = state.after_get.get_mut(&key).and_then(VecDeque::pop_front);
        match change {
            Some(AfterGet::Edit(edit)) => {
                let revision = state.next_revision();
                if let Some(stored) = state.tasks.get_mut(&key) {
                    let mut attributes =
                        serde_json::from_str(&stored.attributes).unwrap_or_else(|e| {
                            panic!("a test stored attributes that are not JSON: {e}")
                        });
                    edit(&mut attributes);
                    stored.attributes = attributes.to_string();
                    stored.touch(revision);
                }
            }
            Some(AfterGet::Remove) => {
                state.tasks.remove(&key);
            }
            None => {}
        }
        reply
    }

    /// `POST` a Task: `If-Match` against the current `ETag`, then the form's fields.
    fn update_task(
        &self,
        state: &mut State,
        request: &Recorded,
        account: &str,
        workspace: &str,
        task: &str,
    ) -> Reply {
        let key = task_key(workspace, task);
        if !state.tasks.contains_key(&key) {
            return not_found(&task_path(workspace, task));
        }
        if state.stale_writes {
            // Someone else wrote first: the task moved on.
            let revision = state.next_revision();
            if let Some(stored) = state.tasks.get_mut(&key) {
                stored.touch(revision);
            }
            return precondition_failed();
        }
        let Some(stored) = state.tasks.get(&key) else {
            return not_found(&task_path(workspace, task));
        };
        if let Some(expected) = request.header("if-match")
            && expected != "*"
            && expected != stored.etag()
        {
            return precondition_failed();
        }
        // A body of another media type carries no parameters.
        let form = if request
            .header("content-type")
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
        {
            request.form()
        } else {
            Vec::new()
        };
        let field = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let attributes = field("Attributes");
        // An object, as TaskRouter's JSON reader takes it: like JavaScript's, it accepts a
        // string with half a surrogate pair, which serde_json's `Value` refuses.
        if let Some(text) = &attributes
            && !serde_json::from_str::<Box<serde_json::value::RawValue>>(text)
                .is_ok_and(|raw| raw.get().starts_with('{'))
        {
            return twilio_error(400, 20001, "Attributes must be a valid JSON object");
        }
        let priority = match field("Priority").map(|p| p.parse::<u64>()) {
            Some(Ok(priority)) => Some(priority),
            Some(Err(_)) => return twilio_error(400, 20001, "Priority must be an integer"),
            None => None,
        };
        let revision = state.next_revision();
        let Some(stored) = state.tasks.get_mut(&key) else {
            return not_found(&task_path(workspace, task));
        };
        if let Some(text) = attributes {
            stored.attributes = text;
        }
        if let Some(priority) = priority {
            stored.priority = priority;
        }
        if let Some(status) = field("AssignmentStatus") {
            stored.assignment_status = status;
        }
        if let Some(reason) = field("Reason") {
            stored.reason = Some(reason);
        }
        if let Some(channel) = field("TaskChannel") {
            stored.task_channel_unique_name = channel;
        }
        stored.touch(revision);
        let stored = &state.tasks[&key];
        Reply::json(200, self.task(account, workspace, task, stored)).header("ETag", stored.etag())
    }

    /// A Task as TaskRouter's API reference shows it: `attributes` is a JSON string.
    fn task(&self, account: &str, workspace: &str, sid: &str, task: &Task) -> Value {
        let workspace_url = format!("{}/v1/Workspaces/{workspace}", self.base_url);
        let url = format!("{workspace_url}/Tasks/{sid}");
        json!({
            "account_sid": account,
            "addons": "{}",
            "age": task.created.elapsed().as_secs(),
            "assignment_status": task.assignment_status,
            "attributes": task.attributes,
            "date_created": task.date_created,
            "date_updated": task.date_updated,
            "ignore_capacity": false,
            "priority": task.priority,
            "reason": task.reason,
            "routing_target": null,
            "sid": sid,
            "task_channel_sid": TASK_CHANNEL_SID,
            "task_channel_unique_name": task.task_channel_unique_name,
            "task_queue_entered_date": task.date_created,
            "task_queue_friendly_name": "Sales",
            "task_queue_sid": TASK_QUEUE_SID,
            "timeout": TASK_TIMEOUT_SECONDS,
            "url": url,
            "virtual_start_time": task.date_created,
            "workflow_friendly_name": "Default Fifo Workflow",
            "workflow_sid": WORKFLOW_SID,
            "workspace_sid": workspace,
            "links": {
                "reservations": format!("{url}/Reservations"),
                "task_queue": format!("{workspace_url}/TaskQueues/{TASK_QUEUE_SID}"),
                "workflow": format!("{workspace_url}/Workflows/{WORKFLOW_SID}"),
                "workspace": workspace_url,
            },
        })
    }

    /// A TaskQueue as TaskRouter's API reference shows it.
    fn task_queue(&self, account: &str, workspace: &str, queue: &str, name: &str) -> Value {
        let workspace_url = format!("{}/v1/Workspaces/{workspace}", self.base_url);
        let url = format!("{workspace_url}/TaskQueues/{queue}");
        json!({
            "account_sid": account,
            "assignment_activity_name": "Busy",
            "assignment_activity_sid": ASSIGNMENT_ACTIVITY_SID,
            "date_created": CREATED,
            "date_updated": CREATED,
            "friendly_name": name,
            "max_reserved_workers": 1,
            "reservation_activity_name": "Reserved",
            "reservation_activity_sid": RESERVATION_ACTIVITY_SID,
            "sid": queue,
            "target_workers": "1==1",
            "task_order": "FIFO",
            "url": url,
            "workspace_sid": workspace,
            "links": {
                "assignment_activity": format!("{workspace_url}/Activities/{ASSIGNMENT_ACTIVITY_SID}"),
                "reservation_activity": format!("{workspace_url}/Activities/{RESERVATION_ACTIVITY_SID}"),
                "workspace": workspace_url,
                "statistics": format!("{url}/Statistics"),
                "real_time_statistics": format!("{url}/RealTimeStatistics"),
                "cumulative_statistics": format!("{url}/CumulativeStatistics"),
                "list_statistics": format!("{workspace_url}/TaskQueues/Statistics"),
            },
        })
    }

    /// `GET Conferences.json`: the account's conferences, filtered by `FriendlyName` and
    /// `Status` when given, oldest first.
    fn list_conferences(&self, state: &State, request: &Recorded, account: &str) -> Reply {
        let query = query(request);
        let wanted = |name: &str, value: &str| {
            query
                .iter()
                .find(|(n, _)| n == name)
                .is_none_or(|(_, v)| v == value)
        };
        let items = state
            .conferences
            .iter()
            .filter(|c| c.account == account)
            .filter(|c| wanted("FriendlyName", &c.friendly_name) && wanted("Status", &c.status))
            .map(|c| (c.sid.clone(), conference_json(c)))
            .collect();
        page(state, request, "conferences", items)
    }

    /// `GET Participants.json` of a conference: its calls. A conference the account does not
    /// have has none (an assumption: the stand-in answers an empty list, not `404`).
    fn list_participants(
        &self,
        state: &State,
        request: &Recorded,
        account: &str,
        conference: &str,
    ) -> Reply {
        let items = state
            .conferences
            .iter()
            .filter(|c| c.account == account && c.sid == conference)
            .flat_map(|c| c.participants.iter().map(move |call| (c, call)))
            .map(|(c, call)| (call.clone(), participant_json(c, call)))
            .collect();
        page(state, request, "participants", items)
    }

    /// `GET Recordings.json` of a conference or a call. One with no recordings, or unknown,
    /// answers an empty list (an assumption, as for participants).
    fn list_recordings(&self, state: &State, request: &Recorded, account: &str, of: &Of) -> Reply {
        let items = state
            .recordings
            .iter()
            .filter(|r| r.account == account && &r.of == of)
            .map(|r| (r.sid.clone(), recording_json(r)))
            .collect();
        page(state, request, "recordings", items)
    }

    /// `POST` a conference's or a call's recording with `Status` (`stopped`, `paused`,
    /// `in-progress`). A recording of something else, or gone, is `404`. Assumption: a
    /// recording that no longer runs (`processing`, `completed`, `absent`, or `stopped` asked
    /// to run again) refuses a change with `400` and Twilio's 21220 ("Invalid state"); asking
    /// a stopped one to stop again is answered with it as it is. Refusals a test asked for
    /// ([`StandIn::refuse_conference_stops`], [`StandIn::refuse_pauses`]) come first.
    fn update_recording(
        &self,
        state: &mut State,
        request: &Recorded,
        account: &str,
        of: &Of,
        sid: &str,
    ) -> Reply {
        let form = if request
            .header("content-type")
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
        {
            request.form()
        } else {
            Vec::new()
        };
        let wanted = form
            .iter()
            .find(|(name, _)| name == "Status")
            .map(|(_, value)| value.as_str());
        let refused = match wanted {
            Some("stopped") => matches!(of, Of::Conference(_)) && state.refuse_conference_stops,
            Some("paused") => state.refuse_pauses,
            _ => false,
        };
        let Some(recording) = state
            .recordings
            .iter_mut()
            .find(|r| r.sid == sid && r.account == account && &r.of == of)
        else {
            return not_found(request.path());
        };
        match (recording.status.as_str(), wanted) {
            _ if refused => {
                return twilio_error(400, 21220, "Invalid state for the requested recording");
            }
            (_, None) => return twilio_error(400, 20001, "Missing required parameter Status"),
            ("in-progress" | "paused", Some("stopped")) => {
                recording.status = state.stopped_status.clone().unwrap_or("stopped".into());
            }
            ("in-progress" | "paused", Some(status @ ("paused" | "in-progress"))) => {
                recording.status = status.to_owned();
            }
            ("stopped", Some("stopped")) => {}
            (_, Some("stopped" | "paused" | "in-progress")) => {
                return twilio_error(400, 21220, "Invalid state for the requested recording");
            }
            (_, Some(_)) => {
                return twilio_error(400, 20001, "Status must be stopped, paused or in-progress");
            }
        }
        Reply::json(200, recording_json(recording))
    }
}

/// `GET Recordings.json` of the account: newest first (then by SID), as Twilio lists them,
/// filtered by `DateCreated` (that UTC day), `DateCreated>` (on or after that day's
/// midnight) and `DateCreated<` (before that day's midnight: the narrower of the two readings
/// of Twilio's reference, so a client that counts on the wider one misses a day here). A
/// filter that is not a `YYYY-MM-DD` date is refused with `400`, as Twilio refuses it.
fn list_account_recordings(state: &State, request: &Recorded, account: &str) -> Reply {
    let query = query(request);
    let mut on = None;
    let mut after = None;
    let mut before = None;
    for (name, value) in &query {
        let slot = match name.as_str() {
            "DateCreated" => &mut on,
            "DateCreated>" => &mut after,
            "DateCreated<" => &mut before,
            _ => continue,
        };
        if !is_date(value) {
            return twilio_error(400, 20001, &format!("Invalid value for {name}: {value}"));
        }
        *slot = Some(value.as_str());
    }
    let mut listed: Vec<&VoiceRecording> = state
        .recordings
        .iter()
        .filter(|r| r.account == account)
        .filter(|r| {
            let day = iso8601(r.created_at);
            let day = &day[..10];
            on.is_none_or(|on| day == on)
                && after.is_none_or(|after| day >= after)
                && before.is_none_or(|before| day < before)
        })
        .collect();
    listed.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.sid.cmp(&b.sid)));
    let items = listed
        .into_iter()
        .map(|r| (r.sid.clone(), recording_json(r)))
        .collect();
    page(state, request, "recordings", items)
}

/// `YYYY-MM-DD`.
fn is_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(at, b)| match at {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}

/// `DELETE Recordings/{RE}.json`: `204`, or `404` when the account has no such recording.
/// Assumption: Twilio will not delete a recording that is still being made or processed
/// (`in-progress`, `paused`, `processing`) and answers `400` with its error 20009 ("Cannot
/// delete this resource before it is complete"); the product must stop it first, and retry
/// once it is finished.
fn delete_recording(state: &mut State, account: &str, sid: &str, path: &str) -> Reply {
    let Some(at) = state
        .recordings
        .iter()
        .position(|r| r.sid == sid && r.account == account)
    else {
        return not_found(path);
    };
    if matches!(
        state.recordings[at].status.as_str(),
        "in-progress" | "paused" | "processing"
    ) {
        return twilio_error(
            400,
            20009,
            "Cannot delete this resource before it is complete",
        );
    }
    state.recordings.remove(at);
    Reply::no_content()
}

/// The request's query pairs, decoded, in order.
fn query(request: &Recorded) -> Vec<(String, String)> {
    let query = request.target.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// One page of a Voice API list, in Twilio's envelope, from `(key, item)` pairs in order.
/// `PageSize` (50 when absent, at most 1000, and at most a test's cap) items from the one
/// after `PageToken` (`PA` and the previous page's last key), or from `Page` times the size;
/// `next_page_uri` repeats the filters with the next `Page` and `PageToken`.
fn page(state: &State, request: &Recorded, key: &str, items: Vec<(String, Value)>) -> Reply {
    let query = query(request);
    let param = |name: &str| {
        query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let size = param("PageSize")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, 1000)
        .min(state.page_size_cap.unwrap_or(usize::MAX));
    let number = param("Page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let after_token = param("PageToken")
        .and_then(|token| token.strip_prefix("PA"))
        .and_then(|last| items.iter().position(|(key, _)| key == last))
        .map(|at| at + 1);
    let start = after_token
        .unwrap_or(number.saturating_mul(size))
        .min(items.len());
    let end = start.saturating_add(size).min(items.len());
    let filters: Vec<(&str, &str)> = query
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "PageSize" | "Page" | "PageToken"))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let path = request.path();
    let page_uri = |number: usize, token: Option<&str>| {
        let mut uri = form_urlencoded::Serializer::new(String::new());
        uri.extend_pairs(&filters);
        uri.append_pair("PageSize", &size.to_string());
        uri.append_pair("Page", &number.to_string());
        if let Some(token) = token {
            uri.append_pair("PageToken", &format!("PA{token}"));
        }
        format!("{path}?{}", uri.finish())
    };
    let next = (end < items.len()).then(|| page_uri(number + 1, Some(&items[end - 1].0)));
    let previous = (number > 0).then(|| page_uri(number - 1, None));
    let nulled = |item: &str, value: &Value| {
        let mut value = value.clone();
        for (list, nulled_item, field) in &state.nulled {
            if list == key && nulled_item == item {
                value[field.as_str()] = Value::Null;
            }
        }
        value
    };
    let listed: Vec<Value> = items[start..end]
        .iter()
        .map(|(item, v)| nulled(item, v))
        .collect();
    let mut body = json!({
        "end": end.saturating_sub(1).max(start),
        "first_page_uri": page_uri(0, None),
        "next_page_uri": next,
        "page": number,
        "page_size": size,
        "previous_page_uri": previous,
        "start": start,
        "uri": request.target,
    });
    body[key] = Value::Array(listed);
    Reply::json(200, body)
}

/// `/2010-04-01/Accounts/{AC}`: where an account's Voice resources are.
fn account_uri(account: &str) -> String {
    format!("{VOICE_PREFIX}{account}")
}

/// A conference as the Voice API's reference shows it.
fn conference_json(conference: &Conference) -> Value {
    let uri = format!(
        "{}/Conferences/{}",
        account_uri(&conference.account),
        conference.sid
    );
    json!({
        "account_sid": conference.account,
        "api_version": "2010-04-01",
        "call_sid_ending_conference": null,
        "date_created": conference.date_created,
        "date_updated": conference.date_created,
        "friendly_name": conference.friendly_name,
        "reason_conference_ended": null,
        "region": "us1",
        "sid": conference.sid,
        "status": conference.status,
        "subresource_uris": {
            "participants": format!("{uri}/Participants.json"),
            "recordings": format!("{uri}/Recordings.json"),
        },
        "uri": format!("{uri}.json"),
    })
}

/// A participant as the Voice API's reference shows it.
fn participant_json(conference: &Conference, call_sid: &str) -> Value {
    json!({
        "account_sid": conference.account,
        "call_sid": call_sid,
        "call_sid_to_coach": null,
        "coaching": false,
        "conference_sid": conference.sid,
        "date_created": conference.date_created,
        "date_updated": conference.date_created,
        "end_conference_on_exit": false,
        "hold": false,
        "label": null,
        "muted": false,
        "queue_time": "0",
        "start_conference_on_enter": true,
        "status": "connected",
        "uri": format!(
            "{}/Conferences/{}/Participants/{call_sid}.json",
            account_uri(&conference.account),
            conference.sid
        ),
    })
}

/// A recording as the Voice API's reference shows it: `duration` is `-1` while it runs.
fn recording_json(recording: &VoiceRecording) -> Value {
    let (conference_sid, call_sid) = recording.of.sids();
    let uri = format!(
        "{}/Recordings/{}",
        account_uri(&recording.account),
        recording.sid
    );
    let running = matches!(recording.status.as_str(), "in-progress" | "paused");
    let duration = if running {
        "-1".to_owned()
    } else {
        recording.created.elapsed().as_secs().to_string()
    };
    let source = match (&recording.source, &recording.of) {
        (Some(source), _) => source.as_str(),
        (None, Of::Conference(_)) => "StartConferenceRecordingAPI",
        (None, Of::Call(_)) => "StartCallRecordingAPI",
    };
    json!({
        "account_sid": recording.account,
        "api_version": "2010-04-01",
        "call_sid": call_sid,
        "channels": 2,
        "conference_sid": conference_sid,
        "date_created": recording.date_created,
        "date_updated": recording.date_created,
        "duration": duration,
        "encryption_details": null,
        "error_code": null,
        "media_url": recording
            .media_url
            .clone()
            .unwrap_or_else(|| format!("https://api.twilio.com{uri}")),
        "price": null,
        "price_unit": "USD",
        "sid": recording.sid,
        "source": source,
        "start_time": recording.date_created,
        "status": recording.status,
        "subresource_uris": {
            "add_on_results": format!("{uri}/AddOnResults.json"),
            "transcriptions": format!("{uri}/Transcriptions.json"),
        },
        "uri": format!("{uri}.json"),
    })
}

/// The account the caller authenticated as: the Account SID itself, or the account of an
/// API key. `None` when the credentials are missing or not accepted.
fn authenticate(state: &State, request: &Recorded) -> Option<String> {
    let username = request.username.as_deref()?;
    let password = request.password.as_deref()?;
    let shaped = is_sid(username, "AC") || is_sid(username, "SK");
    let accepted = state
        .credentials
        .iter()
        .any(|(u, p)| u == username && p == password);
    if !(shaped && accepted) {
        return None;
    }
    Some(if username.starts_with("AC") {
        username.to_owned()
    } else {
        KEY_ACCOUNT_SID.to_owned()
    })
}

fn is_sid(text: &str, prefix: &str) -> bool {
    text.len() == 34
        && text.starts_with(prefix)
        && text.bytes().skip(2).all(|b| b.is_ascii_hexdigit())
}

/// Twilio's error body: `code`, `message`, `more_info`, `status`.
fn twilio_error(status: u16, code: u32, message: &str) -> Reply {
    Reply::json(
        status,
        json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        }),
    )
}

fn unauthorized() -> Reply {
    twilio_error(401, 20003, "Authenticate")
        .header("WWW-Authenticate", "Basic realm=\"Twilio API\"")
}

/// The answer to a write whose `If-Match` names a revision the resource has moved past.
fn precondition_failed() -> Reply {
    twilio_error(412, 20412, "Precondition Failed")
}

fn not_found(path: &str) -> Reply {
    twilio_error(
        404,
        20404,
        &format!("The requested resource {path} was not found"),
    )
}

/// The error Twilio sends with a status, for injected faults.
fn error_for_status(status: u16, path: &str) -> Reply {
    match status {
        401 => unauthorized(),
        404 => not_found(path),
        412 => precondition_failed(),
        429 => twilio_error(429, 20429, "Too Many Requests"),
        500 => twilio_error(500, 20500, "Internal Server Error"),
        503 => twilio_error(503, 20503, "Service Unavailable"),
        other => twilio_error(other, 20000 + u32::from(other), reason_phrase(other)),
    }
}

/// HTTP's name for a status ("Bad Gateway"): the message of an injected fault's error.
fn reason_phrase(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("Status")
}

// ---------------------------------------------------------------------------------------
// Connections

/// The listener on 127.0.0.1, port 0, registered with the stand-in's runtime.
fn listen(runtime: &Runtime) -> TcpListener {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("the stand-in cannot listen: {e}"));
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("the stand-in cannot listen without blocking: {e}"));
    let _context = runtime.enter();
    TcpListener::from_std(listener)
        .unwrap_or_else(|e| panic!("the stand-in's runtime cannot take its listener: {e}"))
}

/// The stand-in's thread: serves until `stopped`, then drops the runtime, and with it
/// every connection still open (idle, or holding a request that hangs), closing each.
fn run(
    runtime: Runtime,
    listener: TcpListener,
    shared: Arc<Shared>,
    stopped: oneshot::Receiver<()>,
) {
    runtime.block_on(accept(listener, shared, stopped));
}

/// Accepts connections, each served by its own task, until `stopped` resolves (its sender
/// is dropped with the stand-in).
async fn accept(listener: TcpListener, shared: Arc<Shared>, mut stopped: oneshot::Receiver<()>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stopped => return,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(Arc::clone(&shared), stream));
            }
            // A connection reset before it was accepted, or no file descriptor left: the
            // client sees it, the stand-in keeps listening.
            Err(_) => tokio::time::sleep(ACCEPT_RETRY).await,
        }
    }
}

/// Serves requests on one connection until the client closes it: hyper keeps it alive
/// between requests and honours `Connection: close`. A head over [`MAX_REQUEST_BYTES`] gets
/// `431`, and the read buffer is capped near that size, so no more of a body is held.
async fn serve_connection(shared: Arc<Shared>, stream: TcpStream) {
    let service = hyper::service::service_fn(move |request| answer(Arc::clone(&shared), request));
    // No timer: the product sends whole requests, and the stand-in closes what is left
    // when it stops.
    let connection = http1::Builder::new()
        .max_buf_size(MAX_REQUEST_BYTES)
        .max_header_size(MAX_REQUEST_BYTES)
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service);
    // A client gone mid-request, or a request hyper cannot parse (it answers `400` or
    // `431` itself), ends only this connection.
    let _ = connection.await;
}

/// A request as hyper hands it over: read whole, recorded, and answered, or left hanging.
/// A body over [`MAX_REQUEST_BYTES`] gets `413` and is not recorded; one the client stops
/// sending midway ends the connection, unanswered, as the error returned.
async fn answer(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, BoxError> {
    let _answering = Answering::new(&shared);
    let (head, body) = request.into_parts();
    let Some(body) = read_body(body).await? else {
        return Ok(too_large());
    };
    match shared.respond(recorded(&head, body)) {
        Action::Reply(reply) => Ok(response(&reply)),
        Action::Later(delay, reply) => {
            tokio::time::sleep(delay).await;
            Ok(response(&reply))
        }
        // Never answered: the connection stays open until the stand-in stops and closes it.
        Action::Hang => std::future::pending().await,
    }
}

/// A request being answered, counted in [`Shared::in_flight`] until it is dropped (answered,
/// or abandoned with its connection).
struct Answering<'a>(&'a Shared);

impl<'a> Answering<'a> {
    fn new(shared: &'a Shared) -> Answering<'a> {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.most_in_flight.fetch_max(now, Ordering::SeqCst);
        Answering(shared)
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An error that ends a connection.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The whole body; `None` when it is over [`MAX_REQUEST_BYTES`]: refused on its
/// `Content-Length` before any of it is read, or as soon as what arrived is too much.
async fn read_body(body: Incoming) -> Result<Option<Vec<u8>>, BoxError> {
    if body.size_hint().lower() > MAX_REQUEST_BYTES as u64 {
        return Ok(None);
    }
    match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(collected) => Ok(Some(collected.to_bytes().to_vec())),
        Err(e) if e.is::<LengthLimitError>() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The request as the tests read it: the target as sent, the header names (which hyper
/// lower-cases) in the order they first came, and the Basic credentials decoded.
fn recorded(head: &Parts, body: Vec<u8>) -> Recorded {
    let headers: Vec<(String, String)> = head
        .headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    let credentials = headers
        .iter()
        .find(|(name, _)| name == "authorization")
        .and_then(|(_, value)| basic_credentials(value));
    let (username, password) = credentials.unzip();
    Recorded {
        method: head.method.as_str().to_owned(),
        target: head.uri.to_string(),
        username,
        password,
        headers,
        body,
        answered: None,
        answered_etag: None,
        received: Instant::now(),
    }
}

/// `Basic base64(username:password)`, decoded.
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (username, password) = decoded.split_once(':')?;
    Some((username.to_owned(), password.to_owned()))
}

/// The reply as JSON (or, for `204`, no body) with its status and extra headers; hyper adds `Content-Length`, and
/// `Connection: close` when the client asked for it. A status outside HTTP's range is a
/// test's mistake, answered `500`; so is a header value HTTP cannot carry, left out.
fn response(reply: &Reply) -> hyper::Response<Full<Bytes>> {
    let body = reply
        .body
        .as_ref()
        .map(Value::to_string)
        .unwrap_or_default();
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    if reply.body.is_some() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    for (name, value) in &reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    response
}

/// `413` for a body over [`MAX_REQUEST_BYTES`], closing the connection, since the rest of
/// the body is never read.
fn too_large() -> hyper::Response<Full<Bytes>> {
    let mut response = response(&twilio_error(413, 20413, "Request Entity Too Large"));
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// `serve` (in-process, as `wiring` builds it from these variables) on a rules file, pointed at
/// its own stand-in, with signatures enforced by the test token: the harness of the tests that
/// reach the TaskRouter REST API.
pub struct ServeWithApi {
    pub standin: StandIn,
    pub server: InProcess,
    _dir: TempDir,
}

impl ServeWithApi {
    /// `env` is added after (and so overrides) the base URL, the token and the rules file.
    pub fn start(rules: &str, env: &[(&str, &str)]) -> ServeWithApi {
        let standin = StandIn::start();
        let base_url = standin.base_url();
        // The stand-in speaks both Twilio APIs.
        let mut all = vec![
            ("TWILIO_API_BASE_URL", base_url.as_str()),
            ("TWILIO_VOICE_API_BASE_URL", base_url.as_str()),
            ("TWILIO_AUTH_TOKEN", TOKEN),
        ];
        let dir = TempDir::new();
        let rules_file = dir.write("rules.json", rules);
        let rules_file = rules_file.to_str().expect("a UTF-8 temp path");
        all.push(("RULES_FILE", rules_file));
        all.extend_from_slice(env);
        let server = InProcess::from_env(&all);
        ServeWithApi {
            standin,
            server,
            _dir: dir,
        }
    }

    /// Posts the callback, signed for the server's URL.
    pub fn send(&self, callback: &Callback) -> Response {
        self.server.send(&callback.signed(TOKEN, &self.server.url))
    }

    /// Posts every callback at once, each signed on its own connection from its own thread;
    /// returns each 200 answer with how long it took, in order.
    pub fn send_all_at_once(&self, callbacks: &[Callback]) -> Vec<(Value, std::time::Duration)> {
        let (addr, url) = (self.server.addr, self.server.url.as_str());
        std::thread::scope(|scope| {
            let clients: Vec<_> = callbacks
                .iter()
                .map(|callback| {
                    scope.spawn(move || {
                        let started = Instant::now();
                        let mut connection = crate::support::Connection::open(addr);
                        connection.send(&callback.signed(TOKEN, url));
                        let answer = connection.response().expect_json(200);
                        (answer, started.elapsed())
                    })
                })
                .collect();
            clients
                .into_iter()
                .map(|client| client.join().expect("a client thread panicked"))
                .collect()
        })
    }

    /// Stops the server; the stand-in stays readable.
    pub fn stop(self) -> (StandIn, Logs) {
        let logs = self.server.stop();
        (self.standin, logs)
    }
}
