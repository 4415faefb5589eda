//! The Voice API adapter (`sources::voice_api`) against the stand-in: the conference named
//! after a task, its participants, a conference's and a call's recordings page after page,
//! stopping, pausing and deleting them (a `404` is already done), every failure as one line
//! that names the answer and the operation, with no secret and no caller data in it, and
//! whether Twilio refused the request.

use crate::standin::{Fault, Of, Recorded as Request, StandIn};
use crate::support::{CALLER_DATA, TOKEN};

use std::sync::Arc;
use std::time::{Duration, Instant};

use conditional_recording::ports::{
    Done, Failure, Recorded, Recording, RecordingStatus, Recordings, VoiceFailure,
};
use conditional_recording::sources::taskrouter_api::{Credentials, TaskRouterApi};
use conditional_recording::sources::tokens::{AnyTokens, AuthTokens};
use conditional_recording::sources::voice_api::{
    MAX_PAGES, Operation, REQUEST_TIMEOUT, VoiceApi, VoiceError,
};

const AC: &str = "AC0123456789abcdef0123456789abcdef";
const TASK: &str = "WT0123456789abcdef0123456789abcdef";
const OTHER_TASK: &str = "WTfedcba9876543210fedcba9876543210";
const CF: &str = "CF0123456789abcdef0123456789abcdef";
const OLD_CF: &str = "CF00000000000000000000000000000000";
const OTHER_CF: &str = "CFfedcba9876543210fedcba9876543210";
const CUSTOMER: &str = "CA0123456789abcdef0123456789abcdef";
const WORKER: &str = "CA11111111111111111111111111111111";
const WRONG_TOKEN: &str = "fedcba9876543210fedcba9876543210";

/// `RE` and 32 hex digits ending in `n`.
fn recording_sid(n: usize) -> String {
    format!("RE{n:032x}")
}

/// The stand-in, accepting the test account and token, and the adapter pointed at it.
async fn start() -> (StandIn, VoiceApi) {
    let standin = tokio::task::spawn_blocking(StandIn::start).await.unwrap();
    standin.set_credentials(AC, TOKEN);
    let api = voice_api(&standin.base_url());
    (standin, api)
}

/// The adapter on this base URL, signing with the test token.
fn voice_api(base_url: &str) -> VoiceApi {
    let tokens = Arc::new(AnyTokens::Fixed(Arc::new(
        AuthTokens::parse(TOKEN).unwrap(),
    )));
    let api = TaskRouterApi::new(base_url, Credentials::AuthToken(tokens)).unwrap();
    VoiceApi::new(Arc::new(api))
}

/// The recordings' SIDs and statuses.
fn listed(recordings: &[Recording]) -> Vec<(String, RecordingStatus)> {
    recordings
        .iter()
        .map(|r| (r.sid.clone(), r.status))
        .collect()
}

/// Asserts that an error is one line with no secret and no caller data in it.
fn assert_safe(error: &VoiceError) {
    let line = error.to_string();
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(!line.contains(TOKEN), "no auth token: {line}");
    for data in CALLER_DATA {
        assert!(!line.contains(data), "no caller data ({data}): {line}");
    }
}

/// A request's query pairs.
fn query(request: &Request) -> Vec<(String, String)> {
    let query = request.target.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conference_is_the_one_in_progress_named_after_the_task() {
    let (standin, api) = start().await;
    standin.add_conference(AC, OLD_CF, TASK, "completed");
    standin.add_conference(AC, OTHER_CF, OTHER_TASK, "in-progress");
    standin.add_conference(AC, CF, TASK, "in-progress");
    assert_eq!(
        api.conference_for_task(AC, TASK).await,
        Ok(Some(CF.to_owned()))
    );
    // Only a finished one: no conference to enforce on.
    standin.add_conference(AC, CF, TASK, "completed");
    assert_eq!(api.conference_for_task(AC, TASK).await, Ok(None));
    // None at all.
    let unknown = "WT22222222222222222222222222222222";
    assert_eq!(api.conference_for_task(AC, unknown).await, Ok(None));

    let requests = standin.voice_requests();
    assert_eq!(requests.len(), 3);
    let first = &requests[0];
    assert_eq!(first.method, "GET");
    assert_eq!(
        first.path(),
        format!("/2010-04-01/Accounts/{AC}/Conferences.json")
    );
    let query = query(first);
    for (name, value) in [("FriendlyName", TASK), ("Status", "in-progress")] {
        assert!(
            query.iter().any(|(n, v)| n == name && v == value),
            "{name}={value} in {}",
            first.target
        );
    }
    assert_eq!(first.username.as_deref(), Some(AC));
    assert_eq!(first.password.as_deref(), Some(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_are_their_calls_page_after_page() {
    let (standin, api) = start().await;
    standin.add_conference(AC, CF, TASK, "in-progress");
    let calls: Vec<String> = (0..5).map(|n| format!("CA{n:032x}")).collect();
    for call in &calls {
        standin.add_participant(CF, call);
    }
    standin.cap_page_size(2);
    assert_eq!(api.participant_calls(AC, CF).await, Ok(calls));
    assert_eq!(standin.voice_requests().len(), 3, "three pages of two");
    assert_eq!(api.participant_calls(AC, OTHER_CF).await, Ok(Vec::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conferences_and_a_calls_recordings_page_after_page() {
    let (standin, api) = start().await;
    let statuses = [
        ("in-progress", RecordingStatus::InProgress),
        ("paused", RecordingStatus::Paused),
        ("stopped", RecordingStatus::Stopped),
        ("processing", RecordingStatus::Processing),
        ("completed", RecordingStatus::Completed),
        ("absent", RecordingStatus::Absent),
        ("deleted", RecordingStatus::Other),
    ];
    let mut expected = Vec::new();
    for (n, (word, status)) in statuses.iter().enumerate() {
        let sid = recording_sid(n);
        standin.add_recording(AC, Of::Conference(CF.to_owned()), &sid, word);
        expected.push((sid, *status));
    }
    standin.add_recording(
        AC,
        Of::Call(CUSTOMER.to_owned()),
        &recording_sid(100),
        "completed",
    );
    standin.add_recording(
        AC,
        Of::Call(WORKER.to_owned()),
        &recording_sid(101),
        "in-progress",
    );
    standin.add_recording(
        AC,
        Of::Conference(OTHER_CF.to_owned()),
        &recording_sid(102),
        "paused",
    );
    standin.cap_page_size(3);

    let of_conference = api.list(AC, Recorded::Conference(CF)).await.unwrap();
    assert_eq!(listed(&of_conference), expected);
    let pages = standin.voice_requests();
    assert_eq!(pages.len(), 3, "seven recordings, three a page");
    let path = format!("/2010-04-01/Accounts/{AC}/Conferences/{CF}/Recordings.json");
    assert!(pages.iter().all(|p| p.path() == path && p.method == "GET"));
    assert!(
        query(&pages[0]).contains(&("PageSize".to_owned(), "50".to_owned())),
        "{}",
        pages[0].target
    );
    assert!(
        pages[1..]
            .iter()
            .all(|p| query(p).iter().any(|(n, _)| n == "PageToken")),
        "the next pages are the ones next_page_uri names"
    );

    let of_call = api.list(AC, Recorded::Call(CUSTOMER)).await.unwrap();
    assert_eq!(
        listed(&of_call),
        [(recording_sid(100), RecordingStatus::Completed)]
    );
    let none = api
        .list(AC, Recorded::Call("CA22222222222222222222222222222222"))
        .await;
    assert_eq!(none, Ok(Vec::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_longer_than_the_bound_is_an_error_not_a_partial_answer() {
    let (standin, api) = start().await;
    for n in 0..=MAX_PAGES {
        standin.add_recording(
            AC,
            Of::Call(CUSTOMER.to_owned()),
            &recording_sid(n),
            "completed",
        );
    }
    standin.cap_page_size(1);
    let error = api.list(AC, Recorded::Call(CUSTOMER)).await.unwrap_err();
    assert_eq!(
        error,
        VoiceError::TooManyPages {
            operation: Operation::List
        }
    );
    assert_eq!(standin.voice_requests().len(), MAX_PAGES);
    assert_safe(&error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_recording_and_one_already_gone() {
    let (standin, api) = start().await;
    let (conference_recording, call_recording) = (recording_sid(1), recording_sid(2));
    standin.add_recording(
        AC,
        Of::Conference(CF.to_owned()),
        &conference_recording,
        "in-progress",
    );
    standin.add_recording(AC, Of::Call(CUSTOMER.to_owned()), &call_recording, "paused");

    let stopped = api
        .stop(AC, Recorded::Conference(CF), &conference_recording)
        .await;
    assert_eq!(stopped, Ok(Done::Now));
    assert_eq!(
        standin.recording_status(&conference_recording).as_deref(),
        Some("stopped")
    );
    let request = standin.voice_requests().pop().unwrap();
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.path(),
        format!(
            "/2010-04-01/Accounts/{AC}/Conferences/{CF}/Recordings/{conference_recording}.json"
        )
    );
    assert_eq!(
        request.form(),
        [("Status".to_owned(), "stopped".to_owned())]
    );
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );

    let stopped = api
        .stop(AC, Recorded::Call(CUSTOMER), &call_recording)
        .await;
    assert_eq!(stopped, Ok(Done::Now));
    assert_eq!(
        standin.recording_status(&call_recording).as_deref(),
        Some("stopped")
    );
    // Stopped and deleted, or never of this conference: 404, already done.
    for (of, sid) in [
        (Recorded::Conference(CF), recording_sid(9)),
        (Recorded::Conference(OTHER_CF), conference_recording.clone()),
    ] {
        assert_eq!(api.stop(AC, of, &sid).await, Ok(Done::AlreadyGone));
    }
    assert_eq!(standin.voice_requests().last().unwrap().answered, Some(404));
}

/// What the field shows: a conference recording refuses `Status=stopped` (`400`, 21220), a
/// refusal, and accepts `Status=paused` with `PauseBehavior=skip`; a refused pause is one too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stop_is_a_refusal_and_a_pause_skips_the_pause() {
    let (standin, api) = start().await;
    let sid = recording_sid(3);
    standin.add_recording(AC, Of::Conference(CF.to_owned()), &sid, "in-progress");
    standin.refuse_conference_stops();

    let refused = api
        .stop(AC, Recorded::Conference(CF), &sid)
        .await
        .unwrap_err();
    assert_eq!(refused.to_string(), "Voice API answered 400 on stop");
    assert_eq!(refused.failure(), Failure::Refused);

    let paused = api.pause(AC, Recorded::Conference(CF), &sid).await;
    assert_eq!(paused, Ok(Done::Now));
    assert_eq!(standin.recording_status(&sid).as_deref(), Some("paused"));
    let request = standin.voice_requests().pop().unwrap();
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.path(),
        format!("/2010-04-01/Accounts/{AC}/Conferences/{CF}/Recordings/{sid}.json")
    );
    assert_eq!(
        request.form(),
        [
            ("Status".to_owned(), "paused".to_owned()),
            ("PauseBehavior".to_owned(), "skip".to_owned()),
        ]
    );
    let gone = api
        .pause(AC, Recorded::Conference(CF), &recording_sid(9))
        .await;
    assert_eq!(gone, Ok(Done::AlreadyGone));

    standin.refuse_pauses();
    let refused = api
        .pause(AC, Recorded::Conference(CF), &sid)
        .await
        .unwrap_err();
    assert_eq!(refused.to_string(), "Voice API answered 400 on pause");
    assert_eq!(refused.failure(), Failure::Refused);
    assert_safe(&refused);

    // A 500 or a 429 is no refusal: another delivery may do better.
    standin.fail_next(1, Fault::Status(500));
    let failed = api.stop(AC, Recorded::Call(CUSTOMER), &sid).await;
    assert_eq!(failed.unwrap_err().failure(), Failure::Unavailable);
    standin.fail_next(1, Fault::RateLimited(None));
    let limited = api.stop(AC, Recorded::Call(CUSTOMER), &sid).await;
    assert_eq!(limited.unwrap_err().failure(), Failure::Unavailable);
}

/// An entry without a field the service needs is skipped, the rest of the list used; SIDs
/// with uppercase hex digits are read and sent back as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_entry_spoils_only_itself_and_uppercase_sids_are_used() {
    let (standin, api) = start().await;
    let upper = "CAABCDEF0123456789ABCDEF0123456789";
    standin.add_conference(AC, CF, TASK, "in-progress");
    for call in [CUSTOMER, WORKER, upper] {
        standin.add_participant(CF, call);
    }
    standin.null_field("participants", WORKER, "call_sid");
    standin.cap_page_size(2);
    let calls = api.participant_calls(AC, CF).await;
    assert_eq!(calls, Ok(vec![CUSTOMER.to_owned(), upper.to_owned()]));

    let on_upper = "REABCDEF0123456789ABCDEF0123456789";
    standin.add_recording(AC, Of::Call(upper.to_owned()), on_upper, "completed");
    standin.add_recording(
        AC,
        Of::Call(upper.to_owned()),
        &recording_sid(4),
        "completed",
    );
    standin.null_field("recordings", &recording_sid(4), "status");
    let recordings = api.list(AC, Recorded::Call(upper)).await.unwrap();
    assert_eq!(
        listed(&recordings),
        [(on_upper.to_owned(), RecordingStatus::Completed)]
    );
    assert_eq!(api.delete(AC, on_upper).await, Ok(Done::Now));
    assert_eq!(standin.recording_status(on_upper), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_finished_recording_once_and_never_one_in_progress() {
    let (standin, api) = start().await;
    let (finished, running, processing) = (recording_sid(1), recording_sid(2), recording_sid(3));
    standin.add_recording(AC, Of::Conference(CF.to_owned()), &finished, "stopped");
    standin.add_recording(AC, Of::Conference(CF.to_owned()), &running, "in-progress");
    standin.add_recording(AC, Of::Call(CUSTOMER.to_owned()), &processing, "processing");

    assert_eq!(api.delete(AC, &finished).await, Ok(Done::Now));
    assert_eq!(standin.recording_status(&finished), None);
    let request = standin.voice_requests().pop().unwrap();
    assert_eq!(
        (request.method.as_str(), request.path(), request.answered),
        (
            "DELETE",
            format!("/2010-04-01/Accounts/{AC}/Recordings/{finished}.json").as_str(),
            Some(204)
        )
    );
    assert_eq!(api.delete(AC, &finished).await, Ok(Done::AlreadyGone));

    // Twilio keeps what is still being made or processed: an error, and it stays.
    for sid in [&running, &processing] {
        let refused = api.delete(AC, sid).await;
        assert_eq!(
            refused,
            Err(VoiceError::Status {
                operation: Operation::Delete,
                status: 400
            })
        );
        assert_eq!(
            refused.unwrap_err().to_string(),
            "Voice API answered 400 on delete"
        );
    }
    assert_eq!(
        standin.recording_status(&running).as_deref(),
        Some("in-progress")
    );
    // Once it is finished, a later event deletes it.
    standin.set_recording_status(&processing, "completed");
    assert_eq!(api.delete(AC, &processing).await, Ok(Done::Now));
    assert_eq!(standin.recording_status(&processing), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_a_401() {
    let (standin, api) = start().await;
    standin.set_credentials(AC, WRONG_TOKEN);
    let error = api.conference_for_task(AC, TASK).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "Voice API answered 401 on conference lookup"
    );
    assert_safe(&error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_says_how_long_to_wait() {
    let (standin, api) = start().await;
    standin.fail_next(1, Fault::RateLimited(Some("2".to_owned())));
    let error = api.list(AC, Recorded::Conference(CF)).await.unwrap_err();
    assert_eq!(
        error,
        VoiceError::RateLimited {
            operation: Operation::List,
            retry_after: Some(Duration::from_secs(2))
        }
    );
    assert_eq!(
        error.to_string(),
        "Voice API answered 429 on list (retry after 2 s)"
    );
    standin.fail_next(1, Fault::RateLimited(None));
    let error = api.delete(AC, &recording_sid(1)).await.unwrap_err();
    assert_eq!(error.to_string(), "Voice API answered 429 on delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_on_stop_leaves_the_recording_running() {
    let (standin, api) = start().await;
    let sid = recording_sid(1);
    standin.add_recording(AC, Of::Conference(CF.to_owned()), &sid, "in-progress");
    standin.fail_next_method("POST", 1, Fault::Status(500));
    let error = api
        .stop(AC, Recorded::Conference(CF), &sid)
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "Voice API answered 500 on stop");
    assert_eq!(
        standin.recording_status(&sid).as_deref(),
        Some("in-progress")
    );
    // The next delivery's stop works.
    assert_eq!(
        api.stop(AC, Recorded::Conference(CF), &sid).await,
        Ok(Done::Now)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_hanging_answer_is_a_timeout() {
    let (standin, api) = start().await;
    let sid = recording_sid(1);
    standin.add_recording(AC, Of::Call(CUSTOMER.to_owned()), &sid, "stopped");
    let limit = REQUEST_TIMEOUT + Duration::from_millis(500);

    standin.fail_next(1, Fault::Hang);
    let started = Instant::now();
    let error = api.delete(AC, &sid).await.unwrap_err();
    let waited = started.elapsed();
    assert_eq!(
        error.to_string(),
        "no answer from the Voice API within 1500 ms on delete"
    );
    assert!(waited >= REQUEST_TIMEOUT && waited < limit, "{waited:?}");
    assert_eq!(standin.recording_status(&sid).as_deref(), Some("stopped"));

    standin.fail_next(1, Fault::Delay(REQUEST_TIMEOUT * 2));
    let started = Instant::now();
    let error = api.list(AC, Recorded::Call(CUSTOMER)).await.unwrap_err();
    assert_eq!(
        error,
        VoiceError::Timeout {
            operation: Operation::List
        }
    );
    assert!(started.elapsed() < limit, "{:?}", started.elapsed());

    // Slow, but within the limit: answered.
    standin.fail_next(1, Fault::Delay(Duration::from_millis(200)));
    let started = Instant::now();
    let listed = api.list(AC, Recorded::Call(CUSTOMER)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_is_not_a_sid_never_reaches_a_path() {
    let (standin, api) = start().await;
    let phone = CALLER_DATA[0];
    let errors = [
        api.list(AC, Recorded::Call(phone)).await.unwrap_err(),
        api.conference_for_task(AC, "WT1/../../Calls.json")
            .await
            .unwrap_err(),
        api.participant_calls(phone, CF).await.unwrap_err(),
        api.stop(AC, Recorded::Conference(CF), phone)
            .await
            .unwrap_err(),
        api.delete(AC, "../Calls/CA1").await.unwrap_err(),
    ];
    assert_eq!(
        errors[0],
        VoiceError::NotASid {
            operation: Operation::List,
            kind: "CA"
        }
    );
    assert_eq!(
        errors[0].to_string(),
        "not a CA SID, so nothing was sent to the Voice API on list"
    );
    for error in &errors {
        assert!(matches!(error, VoiceError::NotASid { .. }), "{error}");
        assert_safe(error);
    }
    assert!(standin.voice_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_error_line_holds_a_secret_or_caller_data() {
    let (standin, api) = start().await;
    let mut errors = Vec::new();
    for fault in [
        Fault::Status(401),
        Fault::Status(500),
        Fault::Status(503),
        Fault::RateLimited(Some("2".to_owned())),
        Fault::Hang,
    ] {
        standin.fail_next(1, fault);
        errors.push(api.conference_for_task(AC, TASK).await.unwrap_err());
    }
    // A stop refused by a recording that no longer runs, a delete of one still running.
    let sid = recording_sid(1);
    standin.add_recording(AC, Of::Call(CUSTOMER.to_owned()), &sid, "completed");
    standin.set_recording_status(&sid, "processing");
    errors.push(api.delete(AC, &sid).await.unwrap_err());
    errors.push(
        api.stop(AC, Recorded::Call(CUSTOMER), &sid)
            .await
            .unwrap_err(),
    );
    // Nothing listening: the transport error's whole chain.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let error = voice_api(&closed).delete(AC, &sid).await.unwrap_err();
    assert!(
        matches!(
            error,
            VoiceError::Transport {
                operation: Operation::Delete,
                ..
            }
        ),
        "{error}"
    );
    errors.push(error);
    assert_eq!(errors.len(), 8);
    for error in &errors {
        assert_safe(error);
    }
}
