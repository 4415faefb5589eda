//! `conditional-recording serve` as TaskRouter sees it, spoken to over raw HTTP/1.1: the
//! same server in-process (`InProcess`, its lines captured), and the real binary on a local
//! port where a test needs the process (its banner, memory, SIGTERM, every line it writes).

use crate::support;

use std::sync::Barrier;

use serde_json::{Value, json};
use support::{
    CALLER_DATA, CHAT, Callback, Connection, ENQUEUED_OUTBOUND, EXAMPLE_EXCLUDED_QUEUE, Http,
    INBOUND, InProcess, OUTBOUND, Server, TempDir, assert_decision_line, command, post_form,
    request,
};

const RECORD: &str = "record-from-start";
const DO_NOT_RECORD: &str = "do-not-record";

fn conference(record: &str) -> Value {
    json!({"instruction": "conference", "conference_record": record})
}

// ---------------------------------------------------------------------------------------
// Decisions on the embedded example document

#[test]
fn banner_names_the_url_and_the_embedded_example_rules() {
    let server = Server::start();
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    assert_ne!(server.addr.port(), 0);
    let rules = server.stdout_line().expect("a rules line after the URL");
    assert!(rules.starts_with("rules: "), "{rules:?}");
    assert!(rules.contains("embedded example"), "{rules:?}");
}

#[test]
fn inbound_call_is_recorded_from_start() {
    let server = InProcess::from_env(&[]);
    let callback = Callback::new(INBOUND);
    let answer = server.post_form(&callback.encode()).expect_json(200);
    assert_eq!(answer, conference(RECORD));

    let logs = server.stop();
    let line = logs.decision_for(callback.task_sid());
    assert_decision_line(&line, &callback, RECORD, "no_exclusion_matched", None);
}

#[test]
fn outbound_call_is_not_recorded_by_attribute() {
    let server = InProcess::from_env(&[]);
    let callback = Callback::new(ENQUEUED_OUTBOUND);
    let answer = server.post_form(&callback.encode()).expect_json(200);
    assert_eq!(answer, conference(DO_NOT_RECORD));
    // The Flex dialer's call has no call_sid and Flex accepts it itself: `{}`, and the
    // decision is still made and logged.
    let dialer = Callback::new(OUTBOUND);
    assert_eq!(
        server.post_form(&dialer.encode()).expect_json(200),
        json!({})
    );

    let logs = server.stop();
    let line = logs.decision_for(callback.task_sid());
    assert_decision_line(
        &line,
        &callback,
        DO_NOT_RECORD,
        "excluded_by_attribute",
        Some("exclude_attributes[0]"),
    );
    assert_eq!(line["answer"], "conference", "{line}");
    let line = logs.decision_for(dialer.task_sid());
    assert_decision_line(
        &line,
        &dialer,
        DO_NOT_RECORD,
        "excluded_by_attribute",
        Some("exclude_attributes[0]"),
    );
    assert_eq!(line["answer"], "none", "{line}");
    assert_eq!(line["answer_reason"], "no_call_sid", "{line}");
}

#[test]
fn call_in_excluded_queue_is_not_recorded() {
    let server = InProcess::from_env(&[]);
    let callback = Callback::new(INBOUND).set("TaskQueueSid", EXAMPLE_EXCLUDED_QUEUE);
    let answer = server.post_form(&callback.encode()).expect_json(200);
    assert_eq!(answer, conference(DO_NOT_RECORD));

    let logs = server.stop();
    let line = logs.decision_for(callback.task_sid());
    assert_decision_line(
        &line,
        &callback,
        DO_NOT_RECORD,
        "excluded_by_queue",
        Some("exclude_queues[0]"),
    );
}

#[test]
fn chat_task_gets_an_empty_answer() {
    let server = InProcess::from_env(&[]);
    let callback = Callback::new(CHAT);
    let answer = server.post_form(&callback.encode()).expect_json(200);
    assert_eq!(answer, json!({}));

    let logs = server.stop();
    let line = logs.decision_for(callback.task_sid());
    assert_decision_line(&line, &callback, "no-action", "not_a_call", None);
}

#[test]
fn unparseable_task_attributes_are_not_recorded_by_default() {
    let server = InProcess::from_env(&[]);
    let callback = Callback::new(r#"{"call_sid": "CA1", "direction": "inbound""#);
    let answer = server.post_form(&callback.encode()).expect_json(200);
    assert_eq!(answer, conference(DO_NOT_RECORD));

    let logs = server.stop();
    let line = logs.decision_for(callback.task_sid());
    assert_decision_line(
        &line,
        &callback,
        DO_NOT_RECORD,
        "task_attributes_unparseable",
        None,
    );
}

#[test]
fn unparseable_task_attributes_follow_the_record_policy() {
    let server = InProcess::from_env(&[("ON_RULES_UNAVAILABLE", "record")]);
    let callback = Callback::new("not json at all");
    let answer = server.post_form(&callback.encode()).expect_json(200);
    assert_eq!(answer, conference(RECORD));

    let logs = server.stop();
    let line = logs.decision_for(callback.task_sid());
    assert_decision_line(
        &line,
        &callback,
        RECORD,
        "task_attributes_unparseable",
        None,
    );
}

#[test]
fn twilio_content_type_with_charset_is_a_form() {
    let server = InProcess::example();
    let callback = Callback::new(INBOUND);
    let response = server.send(&request(
        "POST",
        "/assignment",
        &[(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )],
        callback.encode().as_bytes(),
    ));
    assert_eq!(response.expect_json(200), conference(RECORD));
}

#[test]
fn undocumented_extra_parameters_are_tolerated() {
    let server = InProcess::example();
    let callback = Callback::new(ENQUEUED_OUTBOUND)
        .add("ConferenceSid", "CF11111111111111111111111111111111")
        .add("SomeFutureParameter", "x")
        .add("SomeFutureParameter", "y");
    let answer = server.post_form(&callback.encode()).expect_json(200);
    assert_eq!(answer, conference(DO_NOT_RECORD));
}

// ---------------------------------------------------------------------------------------
// A rules file of one's own

/// Records only calls in one queue, excludes outbound calls, passes keys through.
const INCLUDE_DOCUMENT: &str = r#"{
  "enabled": true,
  "include_queues": ["WQaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"],
  "exclude_attributes": [{"key": "direction", "value": "outbound"}],
  "instruction": {
    "post_work_activity_sid": "WA11111111111111111111111111111111",
    "record": true,
    "recording_channels": "dual",
    "timeout": 20,
    "conference_status_callback_event": ["start", "end"]
  }
}"#;

const INCLUDED_QUEUE: &str = "WQaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

#[test]
fn rules_file_include_queues_and_instruction_pass_through() {
    let dir = TempDir::new();
    let path = dir.write("rules.json", INCLUDE_DOCUMENT);
    let server = Server::start_with(&[("RULES_FILE", path.to_str().expect("a UTF-8 path"))]);
    let rules = server.stdout_line().expect("a rules line after the URL");
    assert!(rules.starts_with("rules: "), "{rules:?}");
    assert!(rules.contains(&path.display().to_string()), "{rules:?}");

    let included = Callback::new(INBOUND).set("TaskQueueSid", INCLUDED_QUEUE);
    let answer = server.post_form(&included.encode()).expect_json(200);
    assert_eq!(
        answer,
        json!({
            "instruction": "conference",
            "conference_record": RECORD,
            "post_work_activity_sid": "WA11111111111111111111111111111111",
            "record": true,
            "recording_channels": "dual",
            "timeout": 20,
            "conference_status_callback_event": ["start", "end"]
        })
    );

    // Not in the included queue: not recorded, and `record` (the worker's leg) is dropped.
    let elsewhere = Callback::new(INBOUND);
    let answer = server.post_form(&elsewhere.encode()).expect_json(200);
    assert_eq!(
        answer,
        json!({
            "instruction": "conference",
            "conference_record": DO_NOT_RECORD,
            "post_work_activity_sid": "WA11111111111111111111111111111111",
            "recording_channels": "dual",
            "timeout": 20,
            "conference_status_callback_event": ["start", "end"]
        })
    );

    // Exclusion wins over inclusion.
    let outbound = Callback::new(ENQUEUED_OUTBOUND).set("TaskQueueSid", INCLUDED_QUEUE);
    let answer = server.post_form(&outbound.encode()).expect_json(200);
    assert_eq!(answer["conference_record"], DO_NOT_RECORD);
    assert!(answer.get("record").is_none(), "{answer}");
    assert_eq!(
        answer["post_work_activity_sid"],
        "WA11111111111111111111111111111111"
    );

    // A chat gets nothing passed through.
    let chat = Callback::new(CHAT).set("TaskQueueSid", INCLUDED_QUEUE);
    assert_eq!(server.post_form(&chat.encode()).expect_json(200), json!({}));

    let logs = server.stop();
    let line = logs.decision_for(included.task_sid());
    assert_decision_line(
        &line,
        &included,
        RECORD,
        "included",
        Some("include_queues[0]"),
    );
    let line = logs.decision_for(elsewhere.task_sid());
    assert_decision_line(&line, &elsewhere, DO_NOT_RECORD, "not_included", None);
    let line = logs.decision_for(outbound.task_sid());
    assert_decision_line(
        &line,
        &outbound,
        DO_NOT_RECORD,
        "excluded_by_attribute",
        Some("exclude_attributes[0]"),
    );
}

// ---------------------------------------------------------------------------------------
// Requests refused

#[test]
fn each_missing_required_field_is_named_in_a_400() {
    let server = InProcess::from_env(&[]);
    for field in ["TaskSid", "ReservationSid", "TaskAttributes"] {
        let callback = Callback::new(INBOUND).remove(field);
        let error = server.post_form(&callback.encode()).expect_error(400);
        assert!(error.contains(field), "missing {field}: error {error:?}");
    }
    let logs = server.stop();
    assert!(logs.decisions().is_empty(), "{}", logs.text());
}

#[test]
fn repeated_task_sid_is_refused() {
    let server = InProcess::example();
    let callback = Callback::new(INBOUND).add("TaskSid", "WT22222222222222222222222222222222");
    let error = server.post_form(&callback.encode()).expect_error(400);
    assert!(error.contains("TaskSid"), "{error:?}");
}

#[test]
fn repeated_task_attributes_are_refused() {
    let server = InProcess::example();
    // Two TaskAttributes could smuggle a second, unexcluded task past the rules.
    let callback = Callback::new(OUTBOUND).add("TaskAttributes", INBOUND);
    let error = server.post_form(&callback.encode()).expect_error(400);
    assert!(error.contains("TaskAttributes"), "{error:?}");
}

#[test]
fn malformed_sids_are_refused_without_echoing_them() {
    let server = InProcess::example();
    let cases = [
        ("TaskSid", "WT123"),
        ("TaskSid", "WTAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ("TaskSid", "WR11111111111111111111111111111111"),
        ("ReservationSid", "+14155550100"),
        ("ReservationSid", "WR1111111111111111111111111111111\n"),
        ("TaskQueueSid", "Payments"),
        ("WorkspaceSid", ""),
    ];
    for (field, value) in cases {
        let callback = Callback::new(INBOUND).set(field, value);
        let error = server.post_form(&callback.encode()).expect_error(400);
        assert!(error.contains(field), "{field}={value:?}: error {error:?}");
        if !value.is_empty() {
            assert!(
                !error.contains(value),
                "{field}={value:?}: error echoes it: {error:?}"
            );
        }
    }
}

#[test]
fn json_content_type_is_refused() {
    let server = InProcess::example();
    let body = json!({"TaskSid": "WT11111111111111111111111111111111"}).to_string();
    let response = server.send(&request(
        "POST",
        "/assignment",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    ));
    let error = response.expect_error(400);
    assert!(
        error.contains("application/x-www-form-urlencoded"),
        "{error:?}"
    );

    let callback = Callback::new(INBOUND);
    let response = server.send(&request(
        "POST",
        "/assignment",
        &[],
        callback.encode().as_bytes(),
    ));
    response.expect_error(400);
}

#[test]
fn get_is_405_with_allow_post() {
    let server = InProcess::example();
    let response = server.send(&request("GET", "/assignment", &[], b""));
    response.expect_error(405);
    assert_eq!(response.header("allow"), Some("POST"));
}

#[test]
fn unknown_path_is_404() {
    let server = InProcess::example();
    let callback = Callback::new(INBOUND);
    server
        .send(&post_form("/assignments", &callback.encode()))
        .expect_error(404);
    server
        .send(&request("GET", "/", &[], b""))
        .expect_error(404);
}

#[test]
fn body_over_256_kib_is_413() {
    let server = InProcess::example();
    let callback = Callback::new(INBOUND).add("Padding", &"x".repeat(300 * 1024));
    let body = callback.encode();
    let mut connection = server.connect();
    let writer = connection.send_in_background(post_form("/assignment", &body));
    connection.response().expect_error(413);
    writer.join().expect("the writer thread");

    // The server is still there for the next caller.
    let answer = server
        .post_form(&Callback::new(INBOUND).encode())
        .expect_json(200);
    assert_eq!(answer, conference(RECORD));
}

#[test]
fn body_of_exactly_256_kib_is_accepted() {
    let server = InProcess::example();
    let callback = Callback::new(ENQUEUED_OUTBOUND).add("Padding", "");
    let short = callback.encode().len();
    let body = format!("{}{}", callback.encode(), "x".repeat(256 * 1024 - short));
    assert_eq!(body.len(), 256 * 1024);
    let answer = server.post_form(&body).expect_json(200);
    assert_eq!(answer, conference(DO_NOT_RECORD));
}

#[test]
fn a_body_in_one_byte_chunks_costs_its_length_not_a_buffer_per_chunk() {
    let server = Server::start();
    let before = server.rss_kib();
    // 16 callers each send 50 KB in 1-byte chunks, side by side, and hold the body open until
    // all of it is sent: the server's peak grew by 30 MB when every chunk kept its own buffer,
    // by 6.4 MB now. The bodies are sent at once, not one after another, so each one's time is the
    // time of all of them together, not of the ones queued before it, and the server's peak
    // (VmHWM) is read after the fact, so no body waits on a sampling loop: on a busy machine
    // sending them in turn took longer than the 10 s a body may take.
    let chunk = b"1\r\nx\r\n".repeat(50_000);
    let mut connections: Vec<_> = (0..16)
        .map(|_| {
            let mut connection = server.connect();
            connection.send(
                b"POST /assignment HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                  Content-Type: application/x-www-form-urlencoded\r\n\
                  Transfer-Encoding: chunked\r\n\r\n",
            );
            connection
        })
        .collect();
    let senders: Vec<_> = connections
        .iter()
        .map(|connection| connection.send_in_background(chunk.clone()))
        .collect();
    for sender in senders {
        sender.join().expect("a sender thread");
    }
    // Each body is then read whole and answered (a form without the callback's fields).
    for connection in &mut connections {
        connection.send(b"0\r\n\r\n");
        connection.response().expect_error(400);
    }
    let grown = server.peak_rss_kib().saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "16 bodies of 50 KB grew the server by {grown} KiB at their peak"
    );
}

#[test]
fn non_utf8_body_is_refused() {
    let server = InProcess::example();
    let mut body = Callback::new(INBOUND).encode().into_bytes();
    body.extend_from_slice(b"&Extra=\xff\xfe\x80");
    let response = server.send(&request(
        "POST",
        "/assignment",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &body,
    ));
    response.expect_error(400);
}

#[test]
fn truncated_body_is_refused() {
    let server = InProcess::example();
    let body = Callback::new(INBOUND).encode();
    let mut connection = server.connect();
    let mut bytes = request(
        "POST",
        "/assignment",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    );
    // Announce ten bytes more than are sent, then stop sending.
    let announced = format!("Content-Length: {}\r\n", body.len());
    let inflated = format!("Content-Length: {}\r\n", body.len() + 10);
    let head_end = bytes.len() - body.len();
    let head = String::from_utf8(bytes[..head_end].to_vec())
        .expect("an ASCII head")
        .replace(&announced, &inflated);
    bytes.splice(..head_end, head.into_bytes());
    connection.send(&bytes);
    connection.finish_sending();
    connection.response().expect_error(400);
}

// ---------------------------------------------------------------------------------------
// Connections

#[test]
fn a_request_in_flight_at_sigterm_is_answered_before_the_server_exits() {
    let mut server = Server::start();
    let idle = server.connect();
    let body = Callback::new(INBOUND).encode();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut connection = server.connect();
    let head = format!(
        "POST /assignment HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    connection.send(head.as_bytes());
    connection.send(first.as_bytes());
    std::thread::sleep(std::time::Duration::from_millis(200));

    // Half the body is in when the server is told to stop: it stops taking connections, and
    // this request, still arriving, is answered.
    let pid = server.terminate(std::time::Duration::ZERO);
    assert_eq!(pid, None, "still running, to finish the request");
    std::thread::sleep(std::time::Duration::from_millis(200));
    connection.send(rest.as_bytes());
    let answer = connection.response().expect_json(200);
    assert_eq!(answer, conference(RECORD));
    drop(idle);
    let status = server.terminate(std::time::Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "exits 0: {status:?}");
}

#[test]
fn many_requests_share_one_keep_alive_connection() {
    let server = InProcess::from_env(&[]);
    let mut connection = server.connect();
    let mut sent = Vec::new();
    for i in 0..50 {
        let (attributes, expected) = match i % 3 {
            0 => (INBOUND, conference(RECORD)),
            1 => (ENQUEUED_OUTBOUND, conference(DO_NOT_RECORD)),
            _ => (CHAT, json!({})),
        };
        let callback = Callback::new(attributes);
        connection.send(&post_form("/assignment", &callback.encode()));
        let response = connection.response();
        assert_eq!(response.expect_json(200), expected, "request {i}");
        assert_ne!(response.header("connection"), Some("close"), "request {i}");
        sent.push(callback);
    }
    let logs = server.stop();
    for callback in &sent {
        logs.decision_for(callback.task_sid());
    }
}

#[test]
fn twenty_concurrent_clients_are_all_answered() {
    const CLIENTS: usize = 20;
    let server = InProcess::from_env(&[]);
    let start = Barrier::new(CLIENTS);
    let callbacks: Vec<(Callback, Value)> = (0..CLIENTS)
        .map(|i| {
            if i % 2 == 0 {
                (Callback::new(INBOUND), conference(RECORD))
            } else {
                (Callback::new(ENQUEUED_OUTBOUND), conference(DO_NOT_RECORD))
            }
        })
        .collect();
    std::thread::scope(|scope| {
        let clients: Vec<_> = callbacks
            .iter()
            .map(|(callback, expected)| {
                let addr = server.addr;
                let start = &start;
                scope.spawn(move || {
                    let mut connection = Connection::open(addr);
                    let request = post_form("/assignment", &callback.encode());
                    start.wait();
                    connection.send(&request);
                    assert_eq!(connection.response().expect_json(200), *expected);
                })
            })
            .collect();
        for client in clients {
            client.join().expect("a client thread failed");
        }
    });
    let logs = server.stop();
    assert_eq!(logs.decisions().len(), CLIENTS, "{}", logs.text());
    for (callback, expected) in &callbacks {
        let line = logs.decision_for(callback.task_sid());
        assert_eq!(line["decision"], expected["conference_record"]);
    }
}

// ---------------------------------------------------------------------------------------
// Logs

#[test]
fn logs_hold_no_caller_data_and_every_decision_names_the_task() {
    let server = Server::start();
    let mut answered = Vec::new();
    for attributes in [INBOUND, OUTBOUND, CHAT] {
        let callback = Callback::new(attributes);
        server.post_form(&callback.encode()).expect_json(200);
        answered.push(callback);
    }
    let excluded = Callback::new(INBOUND).set("TaskQueueSid", EXAMPLE_EXCLUDED_QUEUE);
    server.post_form(&excluded.encode()).expect_json(200);
    answered.push(excluded);
    let unparseable = Callback::new(r#"{"from": "+14155550100", "to": "+18005550199""#);
    server.post_form(&unparseable.encode()).expect_json(200);
    answered.push(unparseable);

    // Refused requests carrying caller data.
    let refused = [
        Callback::new(INBOUND).remove("TaskSid"),
        Callback::new(INBOUND).add("TaskSid", "WT33333333333333333333333333333333"),
        Callback::new(OUTBOUND).set("ReservationSid", "+14155550123"),
        Callback::new(INBOUND).set("TaskQueueSid", "+18005550199"),
    ];
    for callback in &refused {
        server.post_form(&callback.encode()).expect_error(400);
    }
    server
        .send(&request(
            "POST",
            "/assignment",
            &[("Content-Type", "application/json")],
            INBOUND.as_bytes(),
        ))
        .expect_error(400);

    let logs = server.stop();
    let lines = logs.json();
    assert!(!lines.is_empty(), "serve logged nothing");
    let compact = |text: &str| {
        serde_json::from_str::<Value>(text)
            .expect("a fixture is JSON")
            .to_string()
    };
    let mut forbidden: Vec<String> = CALLER_DATA.iter().map(|s| s.to_string()).collect();
    for fixture in [INBOUND, OUTBOUND, CHAT] {
        forbidden.push(fixture.trim().to_owned());
        forbidden.push(compact(fixture));
        let encoded = support::form(&[("TaskAttributes", fixture)]);
        forbidden.push(encoded["TaskAttributes=".len()..].to_owned());
    }
    forbidden.push("%2B1415555".to_owned());
    for line in &logs.lines {
        for secret in &forbidden {
            assert!(
                !line.contains(secret.as_str()),
                "a log line holds caller data {secret:?}: {line}"
            );
        }
    }

    let decisions = logs.decisions();
    assert_eq!(decisions.len(), answered.len(), "{}", logs.text());
    for line in &decisions {
        for field in ["task_sid", "reservation_sid", "decision"] {
            assert!(
                line[field].is_string(),
                "decision line without {field}: {line}"
            );
        }
    }
    for callback in &answered {
        let line = logs.decision_for(callback.task_sid());
        assert_eq!(line["reservation_sid"], callback.reservation_sid());
    }
}

#[test]
fn metrics_namespace_names_every_metric_and_a_bad_one_stops_the_start() {
    let server = Server::start_with(&[("METRICS_NAMESPACE", "ConditionalRecording/staging")]);
    let callback = Callback::new(INBOUND);
    server.post_form(&callback.encode()).expect_json(200);
    let logs = server.stop();
    let line = logs.decision_for(callback.task_sid());
    let directives = line["_aws"]["CloudWatchMetrics"]
        .as_array()
        .expect("EMF directives");
    assert!(!directives.is_empty(), "{line}");
    for directive in directives {
        assert_eq!(
            directive["Namespace"], "ConditionalRecording/staging",
            "{line}"
        );
    }

    let output = command(&[("METRICS_NAMESPACE", "AWS/Lambda")])
        .args(["serve", "--addr", "127.0.0.1:0"])
        .output()
        .expect("run the binary");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("METRICS_NAMESPACE must be"),
        "one line names the variable: {stderr}"
    );
}
