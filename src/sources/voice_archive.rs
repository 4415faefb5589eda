//! The account's recordings as the Voice API lists them for a period
//! (`GET /2010-04-01/Accounts/{AC}/Recordings.json` with `DateCreated>` and `DateCreated<`,
//! 1,000 a page, paged by `next_page_uri`) and the conferences they belong to
//! (`GET Conferences/{CF}.json`), for reconciliation (SPEC section 10). Through the REST
//! client the other Twilio adapters use ([`TaskRouterApi`]), built with the Voice API's base
//! URL.

use std::sync::Arc;
use std::time::Duration;

use hyper::header::RETRY_AFTER;
use hyper::{Method, StatusCode};
use serde_json::Value;

use super::taskrouter_api::{SendError, TaskRouterApi, retry_after};
use crate::ports::{ArchivePage, ArchivedRecording, PageRef, RecordingArchive, RecordingStatus};

/// One request's limit: a page of 1,000 recordings is a large answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest page read (1,000 recordings of about 1.2 KB each, with room to spare).
pub const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// Recordings asked for per page: the Voice API's most.
const PAGE_SIZE: &str = "1000";
const ACCOUNTS: &str = "/2010-04-01/Accounts";
/// How long to wait after a `429` that does not say.
const DEFAULT_WAIT: Duration = Duration::from_secs(1);

/// What the archive was doing, named in its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    RecordingsList,
    Conference,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::RecordingsList => "the recordings list",
            Operation::Conference => "a conference",
        })
    }
}

/// A request that failed, in one line naming the answer and the operation, never a URL, a
/// credential or anything a caller said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error("Voice API answered {status} on {operation}")]
    Status { operation: Operation, status: u16 },
    #[error("Voice API answered 429 on {operation}")]
    RateLimited {
        operation: Operation,
        retry_after: Duration,
    },
    #[error("no answer from the Voice API within {} s on {operation}", REQUEST_TIMEOUT.as_secs())]
    Timeout { operation: Operation },
    #[error("the Voice API's answer to {operation} is not what it documents: {detail}")]
    Malformed {
        operation: Operation,
        detail: &'static str,
    },
    #[error("the request to the Voice API failed on {operation}: {detail}")]
    Transport {
        operation: Operation,
        detail: String,
    },
    #[error("not a {kind} SID, so nothing was sent to the Voice API on {operation}")]
    NotASid {
        operation: Operation,
        kind: &'static str,
    },
}

/// The Voice API's recordings list and conferences.
pub struct VoiceArchive {
    api: Arc<TaskRouterApi>,
}

impl VoiceArchive {
    /// `api` is built with the Voice API's base URL; answers up to [`MAX_PAGE_BYTES`] are
    /// read through it.
    pub fn new(api: TaskRouterApi) -> VoiceArchive {
        VoiceArchive {
            api: Arc::new(api.with_response_limit(MAX_PAGE_BYTES)),
        }
    }

    async fn get(
        &self,
        operation: Operation,
        account_sid: &str,
        target: &str,
    ) -> Result<Option<Value>, ArchiveError> {
        let url = self.api.url(target);
        let sent = self
            .api
            .send(Some(account_sid), Method::GET, &url, &[], None);
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, sent)
            .await
            .map_err(|_| ArchiveError::Timeout { operation })?
            .map_err(|error| ArchiveError::Transport {
                operation,
                detail: match error {
                    SendError::NoToken => "no auth token is available".into(),
                    SendError::Missing(what) => format!("no {what}"),
                    SendError::Transport(detail) => detail,
                },
            })?;
        match answer.status {
            status if status.is_success() => serde_json::from_slice(&answer.body)
                .map(Some)
                .map_err(|_| ArchiveError::Malformed {
                    operation,
                    detail: "not JSON",
                }),
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::TOO_MANY_REQUESTS => Err(ArchiveError::RateLimited {
                operation,
                retry_after: answer
                    .headers
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, std::time::SystemTime::now()))
                    .unwrap_or(DEFAULT_WAIT),
            }),
            status => Err(ArchiveError::Status {
                operation,
                status: status.as_u16(),
            }),
        }
    }
}

impl RecordingArchive for VoiceArchive {
    type Error = ArchiveError;

    async fn page(
        &self,
        account_sid: &str,
        page: PageRef<'_>,
    ) -> Result<ArchivePage, ArchiveError> {
        let operation = Operation::RecordingsList;
        let account_sid = checked(account_sid, "AC", operation)?;
        let path = format!("{ACCOUNTS}/{account_sid}/Recordings.json");
        let target = match page {
            PageRef::First { from, to } => {
                let mut query = form_urlencoded::Serializer::new(String::new());
                query.append_pair("DateCreated>", &from.to_string());
                query.append_pair("DateCreated<", &to.to_string());
                query.append_pair("PageSize", PAGE_SIZE);
                format!("{path}?{}", query.finish())
            }
            PageRef::Next(next) if is_next_page(next, &path) => next.to_owned(),
            PageRef::Next(_) => {
                return Err(ArchiveError::Malformed {
                    operation,
                    detail: "next_page_uri is not a page of the same list",
                });
            }
        };
        // A list is never 404 for an account that exists: say so rather than "empty".
        let body =
            self.get(operation, account_sid, &target)
                .await?
                .ok_or(ArchiveError::Status {
                    operation,
                    status: 404,
                })?;
        read_page(&body, &path).map_err(|detail| ArchiveError::Malformed { operation, detail })
    }

    async fn conference_name(
        &self,
        account_sid: &str,
        conference_sid: &str,
    ) -> Result<Option<String>, ArchiveError> {
        let operation = Operation::Conference;
        let account_sid = checked(account_sid, "AC", operation)?;
        let conference_sid = checked(conference_sid, "CF", operation)?;
        let target = format!("{ACCOUNTS}/{account_sid}/Conferences/{conference_sid}.json");
        let Some(body) = self.get(operation, account_sid, &target).await? else {
            return Ok(None);
        };
        match body.get("friendly_name") {
            Some(Value::String(name)) => Ok(Some(name.clone())),
            Some(Value::Null) => Ok(None),
            _ => Err(ArchiveError::Malformed {
                operation,
                detail: "the conference has no friendly_name",
            }),
        }
    }

    fn retry_after(error: &ArchiveError) -> Option<Duration> {
        match error {
            ArchiveError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// A SID of this kind from Twilio: the prefix and 32 hex digits of either case (Twilio's
/// API description allows both).
pub fn is_twilio_sid(value: &str, kind: &str) -> bool {
    value.len() == 34
        && value.starts_with(kind)
        && value.bytes().skip(2).all(|b| b.is_ascii_hexdigit())
}

fn checked<'a>(
    value: &'a str,
    kind: &'static str,
    operation: Operation,
) -> Result<&'a str, ArchiveError> {
    if is_twilio_sid(value, kind) {
        Ok(value)
    } else {
        Err(ArchiveError::NotASid { operation, kind })
    }
}

/// Whether `next` is `path` with a query of plain URL characters: the base URL comes first,
/// so the API can never send the credentials elsewhere.
fn is_next_page(next: &str, path: &str) -> bool {
    next.strip_prefix(path)
        .and_then(|rest| rest.strip_prefix('?'))
        .is_some_and(|query| query.bytes().all(|b| b.is_ascii_graphic() && b != b'#'))
}

/// Reads a page. An entry without a field the service needs is left out and named (the rest
/// of the page is still used); a SID of the wrong shape counts as missing, since it would go
/// into a later request's path.
fn read_page(body: &Value, path: &str) -> Result<ArchivePage, &'static str> {
    let list = body
        .get("recordings")
        .and_then(Value::as_array)
        .ok_or("no recordings list")?;
    let mut page = ArchivePage::default();
    for entry in list {
        match read_recording(entry) {
            Ok(recording) => page.recordings.push(recording),
            Err(field) => {
                tracing::warn!(
                    list = "recordings",
                    field,
                    "list entry skipped: the field is missing, null or malformed"
                );
                page.unreadable.push(field);
            }
        }
    }
    page.next = match body.get("next_page_uri") {
        None | Some(Value::Null) => None,
        Some(Value::String(next)) if is_next_page(next, path) => Some(next.clone()),
        Some(_) => return Err("next_page_uri is not a page of the same list"),
    };
    Ok(page)
}

fn read_recording(entry: &Value) -> Result<ArchivedRecording, &'static str> {
    let text = |field: &'static str| entry.get(field).and_then(Value::as_str);
    let sid_of = |field: &'static str, kind: &str| -> Result<Option<String>, &'static str> {
        match entry.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) if is_twilio_sid(s, kind) => Ok(Some(s.clone())),
            Some(_) => Err(field),
        }
    };
    let sid = text("sid")
        .filter(|s| is_twilio_sid(s, "RE"))
        .ok_or("sid")?
        .to_owned();
    let status_word = text("status").ok_or("status")?.to_owned();
    let date_created = text("date_created")
        .and_then(|d| {
            time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc2822).ok()
        })
        .ok_or("date_created")?
        .unix_timestamp();
    Ok(ArchivedRecording {
        status: RecordingStatus::parse(&status_word),
        status_word,
        sid,
        source: text("source").unwrap_or_default().to_owned(),
        date_created,
        conference_sid: sid_of("conference_sid", "CF")?,
        call_sid: sid_of("call_sid", "CA")?,
        media_url: text("media_url").map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PATH: &str = "/2010-04-01/Accounts/AC00000000000000000000000000000000/Recordings.json";

    fn entry(sid: &str) -> Value {
        json!({
            "account_sid": "AC00000000000000000000000000000000", "api_version": "2010-04-01",
            "call_sid": "CA11111111111111111111111111111111",
            "conference_sid": "CF22222222222222222222222222222222",
            "date_created": "Tue, 01 Dec 2026 09:30:00 +0000",
            "date_updated": "Tue, 01 Dec 2026 09:31:00 +0000",
            "start_time": "Tue, 01 Dec 2026 09:30:00 +0000", "duration": "60", "sid": sid,
            "price": null, "price_unit": "USD", "status": "completed", "channels": 1,
            "source": "StartConferenceRecordingAPI", "error_code": null, "uri": "/x.json",
            "encryption_details": null, "subresource_uris": {},
            "media_url": "https://api.twilio.com/2010-04-01/Accounts/AC00000000000000000000000000000000/Recordings/RE.mp3"
        })
    }

    #[test]
    fn a_page_reads_what_reconciliation_needs() {
        let next = format!("{PATH}?PageSize=1000&Page=1&PageToken=PAx");
        let body = json!({"recordings": [entry("RE0123456789ABCDEF0123456789abcdef")], "next_page_uri": next});
        let page = read_page(&body, PATH).unwrap();
        let recording = &page.recordings[0];
        assert_eq!(
            recording.sid, "RE0123456789ABCDEF0123456789abcdef",
            "either case"
        );
        assert_eq!(recording.status, RecordingStatus::Completed);
        assert_eq!(recording.date_created, 1_796_117_400);
        assert_eq!(
            recording.conference_sid.as_deref(),
            Some("CF22222222222222222222222222222222")
        );
        assert_eq!(page.next.as_deref(), Some(next.as_str()));
        assert!(page.unreadable.is_empty());
    }

    #[test]
    fn a_bad_entry_spoils_only_itself() {
        let mut no_sid = entry("RE0123456789abcdef0123456789abcdef");
        no_sid["sid"] = Value::Null;
        let mut bad_date = entry("RE0123456789abcdef0123456789abcde0");
        bad_date["date_created"] = json!("yesterday");
        let mut call_only = entry("RE0123456789abcdef0123456789abcde1");
        call_only["conference_sid"] = Value::Null;
        let body = json!({"recordings": [no_sid, bad_date, call_only], "next_page_uri": null});
        let page = read_page(&body, PATH).unwrap();
        assert_eq!(page.unreadable, ["sid", "date_created"]);
        assert_eq!(page.recordings.len(), 1);
        assert_eq!(page.recordings[0].conference_sid, None);
        assert_eq!(page.next, None);
    }

    #[test]
    fn a_next_page_elsewhere_is_refused() {
        for next in [
            "https://evil.example/x",
            "/2010-04-01/Accounts/AC1/Calls.json?x=1",
            "/x#y",
        ] {
            let body = json!({"recordings": [], "next_page_uri": next});
            assert!(read_page(&body, PATH).is_err(), "{next}");
        }
        assert!(read_page(&json!({"calls": []}), PATH).is_err());
    }
}
