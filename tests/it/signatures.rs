//! Only signed callbacks are answered: the real binary in `serve` with a token, from the
//! environment or from an SSM SecureString that rotates.

use crate::moto;
use crate::support;
use crate::support::{TOKEN, TOKEN_PARAMETER};

use std::time::{Duration, Instant};

use aws_sdk_ssm::types::ParameterType;
use conditional_recording::rules::EXAMPLE_DOCUMENT;
use conditional_recording::signature::sign;
use conditional_recording::wiring::Settings;
use moto::{Moto, aws_env};
use support::{
    Callback, Http, INBOUND, InProcess, Server, app_on, command, enforced, post_form, request,
};

const OLD_TOKEN: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const NEW_TOKEN: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

#[test]
fn a_signed_callback_is_answered_and_everything_else_refused() {
    let server = Server::start_with(&[("TWILIO_AUTH_TOKEN", TOKEN)]);
    assert_eq!(
        server.stdout_line().as_deref(),
        Some("rules: the embedded example document")
    );
    let callback = Callback::new(INBOUND);

    let answer = server.send(&callback.signed(TOKEN, &server.url));
    assert_eq!(
        answer.expect_json(200)["conference_record"],
        "record-from-start"
    );

    let missing = server.send(&post_form("/assignment", &callback.encode()));
    assert_eq!(missing.expect_error(403), "X-Twilio-Signature is missing");

    // Present, with bytes no base64 has: invalid, not missing.
    let garbled = request(
        "POST",
        "/assignment",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Twilio-Signature", "sign\u{e9}=="),
        ],
        callback.encode().as_bytes(),
    );
    assert_eq!(
        server.send(&garbled).expect_error(403),
        "X-Twilio-Signature is not valid for this URL and body"
    );

    let wrong_token =
        server.send(&callback.signed("ffffffffffffffffffffffffffffffff", &server.url));
    assert_eq!(
        wrong_token.expect_error(403),
        "X-Twilio-Signature is not valid for this URL and body"
    );

    // Signed for one body, sent with another.
    let signature = sign(TOKEN, &server.url, &callback.params);
    let tampered = callback.clone().set(
        "TaskAttributes",
        r#"{"call_sid":"CA1","direction":"outbound"}"#,
    );
    let forged = request(
        "POST",
        "/assignment",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Twilio-Signature", &signature),
        ],
        tampered.encode().as_bytes(),
    );
    server.send(&forged).expect_error(403);

    // Signed for another URL.
    let elsewhere = callback.signed_for(
        TOKEN,
        &server.url,
        "/assignment",
        "https://example.com/assignment",
    );
    server.send(&elsewhere).expect_error(403);

    // An undocumented parameter is covered by the signature too.
    let extra = callback.clone().add("FutureParameter", "x");
    let answer = server.send(&extra.signed(TOKEN, &server.url));
    answer.expect_json(200);

    let logs = server.stop();
    let text = logs.text();
    assert!(!text.contains(TOKEN), "the token reached a log");
    assert!(!text.contains(&signature), "a signature reached a log");
    assert_eq!(
        logs.decisions().len(),
        2,
        "only the signed callbacks were decided"
    );
}

/// `serve` in-process on the example rules, signatures checked against the test token.
fn signing(public_url: Option<&str>, account_sid: Option<&str>) -> InProcess {
    InProcess::start(app_on(
        EXAMPLE_DOCUMENT,
        Settings {
            signatures: enforced(public_url),
            account_sid: account_sid.map(str::to_owned),
            ..Settings::default()
        },
    ))
}

#[test]
fn the_query_string_is_signed_as_sent() {
    let server = signing(None, None);
    let callback = Callback::new(INBOUND);
    let path = "/assignment?tenant=acme&x=a%20b&y=c+d&z='q'";
    let url = format!("http://{}{path}", server.addr);
    let answer = server.send(&callback.signed_for(TOKEN, &url, path, &url));
    answer.expect_json(200);
    // The same query re-encoded is a different URL.
    let reencoded = format!(
        "http://{}/assignment?tenant=acme&x=a+b&y=c+d&z='q'",
        server.addr
    );
    server
        .send(&callback.signed_for(TOKEN, &url, path, &reencoded))
        .expect_error(403);
}

#[test]
fn public_url_is_the_only_url_a_signature_may_cover() {
    let public = "https://calls.example.com/twilio/assignment?tenant=acme";
    let server = signing(Some(public), None);
    let callback = Callback::new(INBOUND);
    let on = |signed_for: &str| callback.signed_for(TOKEN, &server.url, "/assignment", signed_for);
    server.send(&on(public)).expect_json(200);
    let with_port = "https://calls.example.com:443/twilio/assignment?tenant=acme";
    server.send(&on(with_port)).expect_json(200);
    server
        .send(&callback.signed(TOKEN, &server.url))
        .expect_error(403);
}

#[test]
fn callbacks_for_another_account_are_refused() {
    let callback = Callback::new(INBOUND);
    let ours = callback.get("AccountSid").to_owned();
    let server = signing(None, Some(&ours));
    server
        .send(&callback.signed(TOKEN, &server.url))
        .expect_json(200);
    let other = callback
        .clone()
        .set("AccountSid", "AC0123456789abcdef0123456789abcdef");
    let refused = server.send(&other.signed(TOKEN, &server.url));
    assert_eq!(
        refused.expect_error(403),
        "the callback is for another account"
    );
    let none = callback.remove("AccountSid");
    server
        .send(&none.signed(TOKEN, &server.url))
        .expect_error(403);
}

#[test]
fn an_unsigned_callback_is_refused_before_its_body_is_judged() {
    let callback = Callback::new(INBOUND);
    let ours = callback.get("AccountSid").to_owned();
    let server = signing(None, Some(&ours));
    // A repeated AccountSid would be a 400 from a signed caller; unsigned, it is a 403.
    let twice = format!("{}&AccountSid={ours}", callback.encode());
    assert_eq!(
        server.post_form(&twice).expect_error(403),
        "X-Twilio-Signature is missing"
    );
    let signed_twice = callback.clone().add("AccountSid", &ours);
    assert_eq!(
        server
            .send(&signed_twice.signed(TOKEN, &server.url))
            .expect_error(400),
        "AccountSid appears more than once"
    );
}

#[test]
fn validation_off_answers_unsigned_callbacks_and_says_so() {
    let server = Server::start_with(&[
        ("TWILIO_AUTH_TOKEN", TOKEN),
        ("TWILIO_SIGNATURE_VALIDATION", "off"),
    ]);
    let banner = std::iter::from_fn(|| server.stdout_line())
        .find(|line| line.starts_with("signatures:"))
        .unwrap_or_default();
    assert!(banner.contains("NOT VALIDATED"), "{banner}");
    server
        .post_form(&Callback::new(INBOUND).encode())
        .expect_json(200);
    let logs = server.stop();
    assert!(
        logs.text().contains("TWILIO_SIGNATURE_VALIDATION=off"),
        "{}",
        logs.text()
    );
}

#[test]
fn lambda_mode_refuses_to_start_without_a_token_source() {
    let output = command(&[
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9"),
        ("RULES_FILE", "/nonexistent-but-unread.json"),
    ])
    .output()
    .expect("run the binary");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("TWILIO_AUTH_TOKEN_PARAMETER") && last.contains("TWILIO_AUTH_TOKEN"),
        "one line names both variables: {stderr}"
    );

    let output = command(&[
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9"),
        ("TWILIO_AUTH_TOKEN", TOKEN),
    ])
    .output()
    .expect("run the binary");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("RULES_PARAMETER") && stderr.contains("RULES_FILE"),
        "{stderr}"
    );
}

#[test]
fn a_rotated_token_is_picked_up_with_an_overlap() {
    let moto = Moto::start();
    moto.put(
        TOKEN_PARAMETER,
        &format!("{OLD_TOKEN}\n{NEW_TOKEN}\n"),
        ParameterType::SecureString,
    );
    let aws = aws_env(&moto.endpoint());
    let mut env: Vec<(&str, &str)> = aws.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend([
        ("TWILIO_AUTH_TOKEN_PARAMETER", TOKEN_PARAMETER),
        ("RULES_CACHE_TTL_SECONDS", "1"),
    ]);
    let server = Server::start_with(&env);
    let callback = Callback::new(INBOUND);
    let with = |token: &str| server.send(&callback.signed(token, &server.url)).status;

    assert_eq!(
        (with(OLD_TOKEN), with(NEW_TOKEN)),
        (200, 200),
        "both accepted during the overlap"
    );
    moto.put(TOKEN_PARAMETER, NEW_TOKEN, ParameterType::SecureString);
    let deadline = Instant::now() + Duration::from_secs(20);
    while with(OLD_TOKEN) != 403 {
        assert!(Instant::now() < deadline, "the old token was never retired");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(with(NEW_TOKEN), 200);

    let logs = server.stop();
    let text = logs.text();
    for token in [OLD_TOKEN, NEW_TOKEN] {
        assert!(!text.contains(token), "a token reached a log");
    }
    let loaded: Vec<_> = logs.with_message("auth tokens loaded");
    assert_eq!(loaded.len(), 2, "{text}");
}

#[test]
fn tokens_that_cannot_be_read_refuse_callbacks_rather_than_answer_them_unchecked() {
    let moto = Moto::start();
    let aws = aws_env(&moto.endpoint());
    let mut env: Vec<(&str, &str)> = aws.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("TWILIO_AUTH_TOKEN_PARAMETER", TOKEN_PARAMETER));
    let server = Server::start_with(&env);
    let callback = Callback::new(INBOUND);
    let response = server.send(&callback.signed(TOKEN, &server.url));
    assert_eq!(
        response.expect_error(503),
        "signatures cannot be checked: no auth token is available"
    );
}
