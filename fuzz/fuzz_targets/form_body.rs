//! The callback's form body, as `serve` and Lambda hand it to the handler: parsed to a
//! callback, or refused with a 400 naming the field; a parsed callback always gets a
//! decision (signatures off here, so the body alone decides the outcome).
// The service's futures, generic over six ports, nest deeper than the default limit allows.
#![recursion_limit = "256"]

#![no_main]

use conditional_recording::rules::FailPolicy;
use conditional_recording::taskrouter::{AssignmentCallback, is_sid, parse_form};
use conditional_recording::wiring::Signatures;
use conditional_recording_fuzz::{app, block_on, check_response};
use lambda_http::http::Method;
use lambda_http::{Body, Request};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

fuzz_target!(|data: &[u8]| {
    static APP: LazyLock<
        conditional_recording::wiring::App<conditional_recording::sources::StaticRules>,
    > = LazyLock::new(|| app(Signatures::Off, FailPolicy::DoNotRecord));

    let parsed = parse_form(data).and_then(AssignmentCallback::from_params);
    if let Ok(callback) = &parsed {
        assert!(is_sid(&callback.task_sid, "WT"));
        assert!(is_sid(&callback.reservation_sid, "WR"));
        for (value, prefix) in [
            (&callback.task_queue_sid, "WQ"),
            (&callback.workspace_sid, "WS"),
            (&callback.account_sid, "AC"),
        ] {
            assert!(value.as_deref().is_none_or(|v| is_sid(v, prefix)));
        }
    }

    let request: Request = lambda_http::http::Request::builder()
        .method(Method::POST)
        .uri("/assignment")
        .header("host", "127.0.0.1:3000")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::Binary(data.to_vec()))
        .expect("a well-formed request");
    let (status, body) = check_response(&block_on(APP.handle(request)));
    match parsed {
        Ok(_) => assert_eq!(status, 200, "a parsed callback gets a decision: {body}"),
        Err(error) => {
            assert_eq!(status, 400, "{body}");
            assert_eq!(body["error"], error.to_string());
        }
    }
});
