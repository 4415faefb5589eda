//! The Voice REST API (`/2010-04-01`): where a call's recordings are, and stopping, pausing
//! and deleting them, for enforcement (SPEC section 8). It sends through the TaskRouter adapter's
//! client and credentials ([`TaskRouterApi`]), built with the Voice API's base URL
//! (`https://api.twilio.com`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{CONTENT_TYPE, RETRY_AFTER};
use hyper::{HeaderMap, Method, StatusCode};
use serde_json::Value;

use super::taskrouter_api::{Answer, SendError, TaskRouterApi, retry_after};
use crate::ports::{Done, Failure, Recorded, Recording, RecordingStatus, Recordings, VoiceFailure};
use crate::sid::is_sid_any_case;

/// Each request's limit: enforcement has 4 s per delivery for a lookup, a few lists, stops
/// and deletes, so one stuck request must leave room for the `503` that asks for a retry.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(1500);
/// Pages read at most for one list. A call has a handful of recordings and a conference a
/// handful of participants: a longer list is a fault, not something to read to the end.
pub const MAX_PAGES: usize = 10;
/// Items asked for per page: one page holds any real call's list.
const PAGE_SIZE: &str = "50";
/// Where the Voice API's account resources are.
const ACCOUNTS: &str = "/2010-04-01/Accounts";

/// What the adapter was doing, named in its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// The in-progress conference named after a task.
    ConferenceLookup,
    /// A conference's participants.
    Participants,
    /// A conference's or a call's recordings.
    List,
    Stop,
    /// A pause, skipping it (`PauseBehavior=skip`), where a stop was refused.
    Pause,
    Delete,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::ConferenceLookup => "conference lookup",
            Operation::Participants => "participants",
            Operation::List => "list",
            Operation::Stop => "stop",
            Operation::Pause => "pause",
            Operation::Delete => "delete",
        })
    }
}

/// A Voice API request that failed. Its `Display` is one line that names the answer and the
/// operation, never a URL, a credential or anything the caller said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoiceError {
    #[error("Voice API answered {status} on {operation}")]
    Status { operation: Operation, status: u16 },
    /// `429`, with how long it asks the caller to wait, when it says.
    #[error("Voice API answered 429 on {operation}{}", retry_note(.retry_after))]
    RateLimited {
        operation: Operation,
        retry_after: Option<Duration>,
    },
    #[error("no answer from the Voice API within {} ms on {operation}", REQUEST_TIMEOUT.as_millis())]
    Timeout { operation: Operation },
    #[error("the Voice API's answer to {operation} is not what it documents: {detail}")]
    Malformed {
        operation: Operation,
        detail: &'static str,
    },
    #[error("more than {MAX_PAGES} pages from the Voice API on {operation}")]
    TooManyPages { operation: Operation },
    #[error("the request to the Voice API failed on {operation}: {detail}")]
    Transport {
        operation: Operation,
        detail: String,
    },
    #[error("no auth token is available for the Voice API on {operation}")]
    NoToken { operation: Operation },
    #[error("no {what} for the Voice API on {operation}")]
    Missing {
        operation: Operation,
        what: &'static str,
    },
    /// A SID of the wrong shape: it would have gone into a URL path, so nothing was sent.
    #[error("not a {kind} SID, so nothing was sent to the Voice API on {operation}")]
    NotASid {
        operation: Operation,
        kind: &'static str,
    },
}

impl VoiceFailure for VoiceError {
    /// A `4xx` other than `404` and `429` is Twilio's refusal; a `404` never gets here on a
    /// stop, a pause or a delete (it is done), and on a list it says the resource is not
    /// what it should be, which is no refusal of the stop either way.
    fn failure(&self) -> Failure {
        match self {
            VoiceError::Status { status, .. }
                if (400..500).contains(status) && !matches!(status, 404 | 429) =>
            {
                Failure::Refused
            }
            _ => Failure::Unavailable,
        }
    }
}

/// ` (retry after N s)` when the `429` said how long.
fn retry_note(retry_after: &Option<Duration>) -> String {
    retry_after
        .map(|wait| format!(" (retry after {} s)", wait.as_secs()))
        .unwrap_or_default()
}

impl VoiceError {
    /// The client's failure to get an answer, in this operation's words.
    fn unsent(error: SendError, operation: Operation) -> VoiceError {
        match error {
            SendError::NoToken => VoiceError::NoToken { operation },
            SendError::Missing(what) => VoiceError::Missing { operation, what },
            SendError::Transport(detail) => VoiceError::Transport { operation, detail },
        }
    }

    /// An answer that is neither success nor (for stop and delete) `404`.
    fn refused(status: StatusCode, headers: &HeaderMap, operation: Operation) -> VoiceError {
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, std::time::SystemTime::now()));
            return VoiceError::RateLimited {
                operation,
                retry_after,
            };
        }
        VoiceError::Status {
            operation,
            status: status.as_u16(),
        }
    }
}

/// The Voice API, through a [`TaskRouterApi`] built with its base URL.
pub struct VoiceApi {
    api: Arc<TaskRouterApi>,
}

impl VoiceApi {
    pub fn new(api: Arc<TaskRouterApi>) -> VoiceApi {
        VoiceApi { api }
    }

    /// One request, with [`REQUEST_TIMEOUT`]; `form` is sent as a form body.
    async fn request(
        &self,
        operation: Operation,
        account_sid: &str,
        method: Method,
        target: &str,
        form: Option<String>,
    ) -> Result<Answer, VoiceError> {
        let url = self.api.url(target);
        let form_type = [(CONTENT_TYPE, "application/x-www-form-urlencoded")];
        let headers: &[_] = if form.is_some() { &form_type } else { &[] };
        let sent = self
            .api
            .send(Some(account_sid), method, &url, headers, form);
        tokio::time::timeout(REQUEST_TIMEOUT, sent)
            .await
            .map_err(|_| VoiceError::Timeout { operation })?
            .map_err(|e| VoiceError::unsent(e, operation))
    }

    /// Every item of a list, page after page (Twilio's `next_page_uri`), up to [`MAX_PAGES`].
    /// `target` is the first page's path and query.
    async fn list_all<T: Listed>(
        &self,
        operation: Operation,
        account_sid: &str,
        target: String,
    ) -> Result<Vec<T>, VoiceError> {
        let path = target.split('?').next().unwrap_or_default().to_owned();
        let mut items = Vec::new();
        let mut skipped = BTreeMap::new();
        let mut next = Some(target);
        for _ in 0..MAX_PAGES {
            let Some(target) = next.take() else {
                break;
            };
            let answer = self
                .request(operation, account_sid, Method::GET, &target, None)
                .await?;
            if !answer.status.is_success() {
                return Err(VoiceError::refused(
                    answer.status,
                    &answer.headers,
                    operation,
                ));
            }
            let page = parse_page(&answer.body, &path)
                .map_err(|detail| VoiceError::Malformed { operation, detail })?;
            items.extend(page.items);
            for skip in page.skipped {
                *skipped.entry(skip).or_insert(0_usize) += 1;
            }
            next = page.next;
        }
        if next.is_some() {
            return Err(VoiceError::TooManyPages { operation });
        }
        // One line per field at fault, whatever the number of entries: never an entry's
        // content, which may hold caller data.
        for (skip, entries) in skipped {
            tracing::warn!(
                list = T::KEY,
                field = skip.field,
                fault = skip.fault.as_str(),
                entries,
                "Voice API list entries skipped: each lacks a field the service needs; the others are used"
            );
        }
        Ok(items)
    }

    /// Posts `form` to a conference's or a call's recording (a stop or a pause).
    async fn update(
        &self,
        operation: Operation,
        account_sid: &str,
        of: Recorded<'_>,
        recording_sid: &str,
        form: &str,
    ) -> Result<Done, VoiceError> {
        let account_sid = checked(account_sid, "AC", operation)?;
        let parent = parent_path(account_sid, of, operation)?;
        let recording_sid = checked(recording_sid, "RE", operation)?;
        let target = format!("{parent}/Recordings/{recording_sid}.json");
        self.act(
            operation,
            account_sid,
            Method::POST,
            &target,
            Some(form.to_owned()),
        )
        .await
    }

    /// Sends a stop, a pause or a delete: done on success, already done on `404`.
    async fn act(
        &self,
        operation: Operation,
        account_sid: &str,
        method: Method,
        target: &str,
        form: Option<String>,
    ) -> Result<Done, VoiceError> {
        let answer = self
            .request(operation, account_sid, method, target, form)
            .await?;
        match answer.status {
            status if status.is_success() => Ok(Done::Now),
            StatusCode::NOT_FOUND => Ok(Done::AlreadyGone),
            status => Err(VoiceError::refused(status, &answer.headers, operation)),
        }
    }
}

impl Recordings for VoiceApi {
    type Error = VoiceError;

    /// Asks for the in-progress conference named after the task, and checks the answer says
    /// so too: stopping another conference's recordings would be worse than finding none.
    async fn conference_for_task(
        &self,
        account_sid: &str,
        task_sid: &str,
    ) -> Result<Option<String>, VoiceError> {
        let operation = Operation::ConferenceLookup;
        let account_sid = checked(account_sid, "AC", operation)?;
        let task_sid = checked(task_sid, "WT", operation)?;
        let target = with_query(
            &format!("{ACCOUNTS}/{account_sid}/Conferences.json"),
            &[("FriendlyName", task_sid), ("Status", "in-progress")],
        );
        let conferences: Vec<Conference> = self.list_all(operation, account_sid, target).await?;
        Ok(in_progress_for(conferences, task_sid))
    }

    async fn participant_calls(
        &self,
        account_sid: &str,
        conference_sid: &str,
    ) -> Result<Vec<String>, VoiceError> {
        let operation = Operation::Participants;
        let account_sid = checked(account_sid, "AC", operation)?;
        let conference_sid = checked(conference_sid, "CF", operation)?;
        let target = with_query(
            &format!("{ACCOUNTS}/{account_sid}/Conferences/{conference_sid}/Participants.json"),
            &[],
        );
        let participants: Vec<Participant> = self.list_all(operation, account_sid, target).await?;
        Ok(participants.into_iter().map(|p| p.call_sid).collect())
    }

    async fn list(
        &self,
        account_sid: &str,
        of: Recorded<'_>,
    ) -> Result<Vec<Recording>, VoiceError> {
        let operation = Operation::List;
        let account_sid = checked(account_sid, "AC", operation)?;
        let parent = parent_path(account_sid, of, operation)?;
        let target = with_query(&format!("{parent}/Recordings.json"), &[]);
        let listed: Vec<ListedRecording> = self.list_all(operation, account_sid, target).await?;
        Ok(listed
            .into_iter()
            .map(|r| Recording {
                status: RecordingStatus::parse(&r.status),
                sid: r.sid,
                media_url: r.media_url,
                date_created: r.date_created,
            })
            .collect())
    }

    async fn stop(
        &self,
        account_sid: &str,
        of: Recorded<'_>,
        recording_sid: &str,
    ) -> Result<Done, VoiceError> {
        self.update(
            Operation::Stop,
            account_sid,
            of,
            recording_sid,
            "Status=stopped",
        )
        .await
    }

    async fn pause(
        &self,
        account_sid: &str,
        of: Recorded<'_>,
        recording_sid: &str,
    ) -> Result<Done, VoiceError> {
        let form = "Status=paused&PauseBehavior=skip";
        self.update(Operation::Pause, account_sid, of, recording_sid, form)
            .await
    }

    async fn delete(&self, account_sid: &str, recording_sid: &str) -> Result<Done, VoiceError> {
        let operation = Operation::Delete;
        let account_sid = checked(account_sid, "AC", operation)?;
        let recording_sid = checked(recording_sid, "RE", operation)?;
        let target = format!("{ACCOUNTS}/{account_sid}/Recordings/{recording_sid}.json");
        self.act(operation, account_sid, Method::DELETE, &target, None)
            .await
    }
}

/// `value` when it is a SID of this kind: only such text goes into a URL path. Its hex digits
/// may be of either case, as they may be in the Voice API's answers, and are sent as given.
fn checked<'a>(
    value: &'a str,
    kind: &'static str,
    operation: Operation,
) -> Result<&'a str, VoiceError> {
    if is_sid_any_case(value, kind) {
        Ok(value)
    } else {
        Err(VoiceError::NotASid { operation, kind })
    }
}

/// The path of what a recording belongs to: a conference or a call of the account.
fn parent_path(
    account_sid: &str,
    of: Recorded<'_>,
    operation: Operation,
) -> Result<String, VoiceError> {
    Ok(match of {
        Recorded::Conference(sid) => {
            let sid = checked(sid, "CF", operation)?;
            format!("{ACCOUNTS}/{account_sid}/Conferences/{sid}")
        }
        Recorded::Call(sid) => {
            let sid = checked(sid, "CA", operation)?;
            format!("{ACCOUNTS}/{account_sid}/Calls/{sid}")
        }
    })
}

/// The SID of the first conference that is in progress and named after the task.
fn in_progress_for(conferences: Vec<Conference>, task_sid: &str) -> Option<String> {
    conferences
        .into_iter()
        .find(|c| c.friendly_name == task_sid && c.status == "in-progress")
        .map(|c| c.sid)
}

/// A list's first page: the path, these filters and [`PAGE_SIZE`], form-encoded.
fn with_query(path: &str, filters: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.extend_pairs(filters);
    query.append_pair("PageSize", PAGE_SIZE);
    format!("{path}?{}", query.finish())
}

/// An item of a Voice API list, as far as the adapter reads it.
trait Listed: Sized {
    /// The member of a page that holds the list.
    const KEY: &'static str;

    /// The item an entry of the list holds; `Err` names the field it lacks. Its SIDs must
    /// have their shape: they go into later requests' paths.
    fn read(entry: &Value) -> Result<Self, Skip>;
}

/// Why an entry of a list was skipped: the field at fault, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Skip {
    field: &'static str,
    fault: EntryFault,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum EntryFault {
    /// Absent, `null`, or not text.
    Missing,
    /// Text, but not a SID of its kind.
    NotASid,
}

impl EntryFault {
    fn as_str(self) -> &'static str {
        match self {
            EntryFault::Missing => "missing or null",
            EntryFault::NotASid => "not a SID of its kind",
        }
    }
}

/// An entry's text field.
fn text_field(entry: &Value, field: &'static str) -> Result<String, Skip> {
    match entry.get(field) {
        Some(Value::String(text)) => Ok(text.clone()),
        _ => Err(Skip {
            field,
            fault: EntryFault::Missing,
        }),
    }
}

/// An entry's SID field, of this kind.
fn sid_field(entry: &Value, field: &'static str, kind: &str) -> Result<String, Skip> {
    let sid = text_field(entry, field)?;
    if is_sid_any_case(&sid, kind) {
        Ok(sid)
    } else {
        Err(Skip {
            field,
            fault: EntryFault::NotASid,
        })
    }
}

/// A conference, as far as the lookup reads it.
#[derive(Debug)]
struct Conference {
    sid: String,
    friendly_name: String,
    status: String,
}

impl Listed for Conference {
    const KEY: &'static str = "conferences";

    fn read(entry: &Value) -> Result<Conference, Skip> {
        Ok(Conference {
            sid: sid_field(entry, "sid", "CF")?,
            friendly_name: text_field(entry, "friendly_name")?,
            status: text_field(entry, "status")?,
        })
    }
}

/// A participant: its call.
#[derive(Debug)]
struct Participant {
    call_sid: String,
}

impl Listed for Participant {
    const KEY: &'static str = "participants";

    fn read(entry: &Value) -> Result<Participant, Skip> {
        Ok(Participant {
            call_sid: sid_field(entry, "call_sid", "CA")?,
        })
    }
}

/// A recording as listed; `status` is read by [`RecordingStatus::parse`].
#[derive(Debug)]
struct ListedRecording {
    sid: String,
    status: String,
    media_url: Option<String>,
    date_created: Option<i64>,
}

impl Listed for ListedRecording {
    const KEY: &'static str = "recordings";

    fn read(entry: &Value) -> Result<ListedRecording, Skip> {
        let text = |field: &str| entry.get(field).and_then(Value::as_str);
        Ok(ListedRecording {
            sid: sid_field(entry, "sid", "RE")?,
            status: text_field(entry, "status")?,
            // Neither is needed to stop or delete: a missing one spoils nothing.
            media_url: text("media_url").map(str::to_owned),
            date_created: text("date_created").and_then(|d| {
                time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc2822)
                    .ok()
                    .map(time::OffsetDateTime::unix_timestamp)
            }),
        })
    }
}

/// One page of a list.
#[derive(Debug)]
struct Page<T> {
    items: Vec<T>,
    /// The entries left out, each by its fault: one bad entry spoils only itself.
    skipped: Vec<Skip>,
    /// The next page's path and query, relative to the base URL.
    next: Option<String>,
}

/// Reads a page: every entry that has what the service needs, and why each other one was
/// skipped. The next page must be of the same list (`path`) and be text a URL can carry: the
/// base URL comes first, so the API can never send the credentials elsewhere.
fn parse_page<T: Listed>(body: &[u8], path: &str) -> Result<Page<T>, &'static str> {
    let mut page: Value = serde_json::from_slice(body).map_err(|_| "not JSON")?;
    let entries = match page.get_mut(T::KEY).map(Value::take) {
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err("the list is not an array"),
        None => return Err("no list"),
    };
    let (mut items, mut skipped) = (Vec::new(), Vec::new());
    for entry in &entries {
        match T::read(entry) {
            Ok(item) => items.push(item),
            Err(skip) => skipped.push(skip),
        }
    }
    let next = match page.get("next_page_uri") {
        None | Some(Value::Null) => None,
        Some(Value::String(next)) if is_next_page(next, path) => Some(next.clone()),
        Some(_) => return Err("next_page_uri is not a page of the same list"),
    };
    Ok(Page {
        items,
        skipped,
        next,
    })
}

/// Whether `next` is `path` with a query of plain URL characters.
fn is_next_page(next: &str, path: &str) -> bool {
    next.strip_prefix(path)
        .and_then(|rest| rest.strip_prefix('?'))
        .is_some_and(|query| query.bytes().all(|b| b.is_ascii_graphic() && b != b'#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AC: &str = "AC0123456789abcdef0123456789abcdef";
    const CF: &str = "CF0123456789abcdef0123456789abcdef";
    const RE: &str = "RE0123456789abcdef0123456789abcdef";
    const RECORDINGS: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls/CA0123456789abcdef0123456789abcdef/Recordings.json";

    fn recordings_page(body: &Value) -> Result<Page<ListedRecording>, &'static str> {
        parse_page(body.to_string().as_bytes(), RECORDINGS)
    }

    #[test]
    fn a_page_of_recordings_as_twilio_documents_it() {
        let next = format!("{RECORDINGS}?PageSize=50&Page=1&PageToken=PA{}", &RE[2..]);
        let body = serde_json::json!({
            "end": 0, "first_page_uri": format!("{RECORDINGS}?PageSize=50&Page=0"),
            "next_page_uri": next, "page": 0, "page_size": 50, "previous_page_uri": null,
            "start": 0, "uri": format!("{RECORDINGS}?PageSize=50&Page=0"),
            "recordings": [{
                "account_sid": AC, "api_version": "2010-04-01", "call_sid": null,
                "conference_sid": CF, "date_created": "Fri, 14 Oct 2016 21:56:34 +0000",
                "duration": "-1", "sid": RE, "status": "in-progress", "channels": 2,
                "source": "StartConferenceRecordingAPI", "price": null,
                "uri": format!("/2010-04-01/Accounts/{AC}/Recordings/{RE}.json"),
            }],
        });
        let page = recordings_page(&body).unwrap();
        assert_eq!(page.next.as_deref(), Some(next.as_str()));
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].sid, RE);
        assert_eq!(
            RecordingStatus::parse(&page.items[0].status),
            RecordingStatus::InProgress
        );
    }

    #[test]
    fn the_conference_is_the_one_in_progress_named_after_the_task() {
        const WT: &str = "WT0123456789abcdef0123456789abcdef";
        let path = format!("{ACCOUNTS}/{AC}/Conferences.json");
        let conference = |sid: &str, name: &str, status: &str| {
            serde_json::json!({
                "account_sid": AC, "api_version": "2010-04-01",
                "call_sid_ending_conference": null, "friendly_name": name,
                "date_created": "Tue, 04 Mar 2025 09:15:00 +0000", "region": "us1",
                "reason_conference_ended": null, "sid": sid, "status": status,
                "uri": format!("{path}/{sid}.json"),
            })
        };
        let other = "CFfedcba9876543210fedcba9876543210";
        let body = serde_json::json!({
            "conferences": [
                conference(other, WT, "completed"),
                conference(other, "WTfedcba9876543210fedcba9876543210", "in-progress"),
                conference(CF, WT, "in-progress"),
            ],
            "next_page_uri": null, "page": 0, "page_size": 50,
        });
        let page: Page<Conference> = parse_page(body.to_string().as_bytes(), &path).unwrap();
        assert_eq!(in_progress_for(page.items, WT).as_deref(), Some(CF));
        let finished = serde_json::json!({"conferences": [conference(CF, WT, "completed")]});
        let page: Page<Conference> = parse_page(finished.to_string().as_bytes(), &path).unwrap();
        assert_eq!(in_progress_for(page.items, WT), None);
        // One whose SID is not a conference's is skipped, never sent back in a path.
        let bad = serde_json::json!({"conferences": [conference("CF1", WT, "in-progress")]});
        let bad: Page<Conference> = parse_page(bad.to_string().as_bytes(), &path).unwrap();
        assert_eq!(in_progress_for(bad.items, WT), None);
        let not_a_sid = Skip {
            field: "sid",
            fault: EntryFault::NotASid,
        };
        assert_eq!(bad.skipped, [not_a_sid]);
    }

    #[test]
    fn participants_are_their_calls() {
        const CA: &str = "CA0123456789abcdef0123456789abcdef";
        let path = format!("{ACCOUNTS}/{AC}/Conferences/{CF}/Participants.json");
        let body = serde_json::json!({
            "participants": [{
                "account_sid": AC, "call_sid": CA, "conference_sid": CF, "coaching": false,
                "end_conference_on_exit": false, "hold": false, "label": "customer",
                "muted": false, "start_conference_on_enter": true, "status": "connected",
                "uri": format!("{path}/{CA}.json"),
            }],
            "next_page_uri": format!("{path}?PageSize=50&Page=1&PageToken=PA{CA}"),
        });
        let page: Page<Participant> = parse_page(body.to_string().as_bytes(), &path).unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].call_sid, CA);
        assert!(page.next.is_some());
    }

    #[test]
    fn an_entry_without_a_field_the_service_needs_spoils_only_itself() {
        const CA: &str = "CA0123456789abcdef0123456789abcdef";
        let path = format!("{ACCOUNTS}/{AC}/Conferences/{CF}/Participants.json");
        let body = serde_json::json!({"participants": [
            {"call_sid": CA, "label": "customer"},
            {"call_sid": null, "label": "agent"},
            {"label": "supervisor"},
            {"call_sid": 7},
            {"call_sid": "+14155550100"},
            "CA0123456789abcdef0123456789abcdef",
            {"call_sid": "CAFEDCBA9876543210FEDCBA9876543210"},
        ]});
        let page: Page<Participant> = parse_page(body.to_string().as_bytes(), &path).unwrap();
        let calls: Vec<&str> = page.items.iter().map(|p| p.call_sid.as_str()).collect();
        assert_eq!(calls, [CA, "CAFEDCBA9876543210FEDCBA9876543210"]);
        let skip = |fault| Skip {
            field: "call_sid",
            fault,
        };
        assert_eq!(
            page.skipped,
            [
                skip(EntryFault::Missing),
                skip(EntryFault::Missing),
                skip(EntryFault::Missing),
                skip(EntryFault::NotASid),
                skip(EntryFault::Missing),
            ]
        );
        let recording = serde_json::json!({"recordings": [
            {"sid": RE, "status": null},
            {"sid": null, "status": "completed"},
            {"sid": "RE0123456789ABCDEF0123456789ABCDEF", "status": "completed"},
        ]});
        let page = recordings_page(&recording).unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].sid, "RE0123456789ABCDEF0123456789ABCDEF");
        let fields: Vec<&str> = page.skipped.iter().map(|s| s.field).collect();
        assert_eq!(fields, ["status", "sid"]);
    }

    #[test]
    fn the_last_page_and_an_empty_list_have_no_next() {
        let last = recordings_page(&serde_json::json!({"recordings": [], "next_page_uri": null}));
        assert!(
            last.as_ref()
                .is_ok_and(|p| p.items.is_empty() && p.next.is_none())
        );
        let bare = recordings_page(&serde_json::json!({"recordings": []}));
        assert!(bare.is_ok_and(|p| p.next.is_none()));
    }

    #[test]
    fn what_the_api_does_not_document_is_refused() {
        let item = |sid: &str| serde_json::json!({"sid": sid, "status": "completed"});
        let cases = [
            (serde_json::json!([]), "no list"),
            (serde_json::json!({"calls": []}), "no list"),
            (
                serde_json::json!({"recordings": {}}),
                "the list is not an array",
            ),
            (
                serde_json::json!({"recordings": null}),
                "the list is not an array",
            ),
            (
                serde_json::json!({"recordings": [item(RE)], "next_page_uri": 1}),
                "next_page_uri is not a page of the same list",
            ),
        ];
        for (body, detail) in cases {
            assert_eq!(recordings_page(&body).err(), Some(detail), "{body}");
        }
        let not_json = parse_page::<ListedRecording>(b"<html>", RECORDINGS);
        assert_eq!(not_json.err(), Some("not JSON"));
    }

    #[test]
    fn a_next_page_is_the_same_list_with_a_plain_query() {
        let same = format!("{RECORDINGS}?Page=1&PageToken=PAabc");
        assert!(is_next_page(&same, RECORDINGS));
        for elsewhere in [
            "https://attacker.example/x?Page=1".to_owned(),
            "//attacker.example/x?Page=1".to_owned(),
            format!("{RECORDINGS}/../../Recordings.json?Page=1"),
            format!("{RECORDINGS}?Page=1 2"),
            format!("{RECORDINGS}?Page=1#x"),
            format!("{RECORDINGS}?Page=1\r\nHost: x"),
            RECORDINGS.to_owned(),
        ] {
            assert!(!is_next_page(&elsewhere, RECORDINGS), "{elsewhere}");
        }
    }

    #[test]
    fn errors_name_the_answer_and_the_operation_in_one_line() {
        let mut headers = HeaderMap::new();
        let limited = |headers: &HeaderMap| {
            VoiceError::refused(StatusCode::TOO_MANY_REQUESTS, headers, Operation::List)
        };
        assert_eq!(
            limited(&headers).to_string(),
            "Voice API answered 429 on list"
        );
        headers.insert(RETRY_AFTER, hyper::header::HeaderValue::from_static("2"));
        assert_eq!(
            limited(&headers).to_string(),
            "Voice API answered 429 on list (retry after 2 s)"
        );
        let failed =
            VoiceError::refused(StatusCode::INTERNAL_SERVER_ERROR, &headers, Operation::Stop);
        assert_eq!(failed.to_string(), "Voice API answered 500 on stop");
        assert_eq!(
            VoiceError::Timeout {
                operation: Operation::Delete
            }
            .to_string(),
            "no answer from the Voice API within 1500 ms on delete"
        );
        assert_eq!(
            VoiceError::unsent(SendError::NoToken, Operation::ConferenceLookup).to_string(),
            "no auth token is available for the Voice API on conference lookup"
        );
    }

    #[test]
    fn only_a_4xx_other_than_404_and_429_is_a_refusal() {
        let empty = HeaderMap::new();
        let answered = |status: u16| {
            let status = StatusCode::from_u16(status).unwrap();
            VoiceError::refused(status, &empty, Operation::Stop).failure()
        };
        for status in [400, 403, 409, 422] {
            assert_eq!(answered(status), Failure::Refused, "{status}");
        }
        for status in [404, 429, 500, 502, 503] {
            assert_eq!(answered(status), Failure::Unavailable, "{status}");
        }
        let unanswered = [
            VoiceError::Timeout {
                operation: Operation::Stop,
            },
            VoiceError::NotASid {
                operation: Operation::Stop,
                kind: "RE",
            },
            VoiceError::Transport {
                operation: Operation::Stop,
                detail: "connection reset".into(),
            },
        ];
        for error in unanswered {
            assert_eq!(error.failure(), Failure::Unavailable, "{error}");
        }
    }

    #[test]
    fn only_sids_of_the_right_kind_reach_a_path() {
        let op = Operation::Stop;
        assert_eq!(checked(CF, "CF", op), Ok(CF));
        // As the Voice API may write it, and sent back as it was written.
        let upper = "CF0123456789ABCDEF0123456789ABCDEF";
        assert_eq!(checked(upper, "CF", op), Ok(upper));
        for bad in [
            "",
            "CF",
            "cf0123456789abcdef0123456789abcdef",
            "CF0123456789ABCDEF0123456789ABCDEG",
            "../../Recordings",
            RE,
        ] {
            assert_eq!(
                checked(bad, "CF", op),
                Err(VoiceError::NotASid {
                    operation: op,
                    kind: "CF"
                })
            );
        }
        assert_eq!(
            parent_path(AC, Recorded::Call(CF), op),
            Err(VoiceError::NotASid {
                operation: op,
                kind: "CA"
            })
        );
        assert_eq!(
            parent_path(AC, Recorded::Conference(CF), op).as_deref(),
            Ok(format!("{ACCOUNTS}/{AC}/Conferences/{CF}").as_str())
        );
    }

    #[test]
    fn a_lookup_filters_by_name_and_status_and_asks_for_full_pages() {
        let target = with_query(
            "/x.json",
            &[("FriendlyName", "WT1 &?"), ("Status", "in-progress")],
        );
        assert_eq!(
            target,
            "/x.json?FriendlyName=WT1+%26%3F&Status=in-progress&PageSize=50"
        );
    }
}
