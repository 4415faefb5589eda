//! API Gateway events (REST v1, HTTP API v2, function URLs) as the Lambda runtime hands them
//! over: whatever JSON arrives, the function answers with a documented status and a JSON
//! body in API Gateway's response shape. The same event with signatures enforced gets the
//! same answer, or 403.
// The service's futures, generic over six ports, nest deeper than the default limit allows.
#![recursion_limit = "256"]

#![no_main]

use std::sync::LazyLock;

use conditional_recording::lambda;
use conditional_recording::rules::FailPolicy;
use conditional_recording::sources::StaticRules;
use conditional_recording::wiring::{App, Signatures};
use conditional_recording_fuzz::{SAMPLE_TOKEN, app, block_on, check_answer, enforced};
use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

static OPEN: LazyLock<App<StaticRules>> =
    LazyLock::new(|| app(Signatures::Off, FailPolicy::DoNotRecord));
static SIGNED: LazyLock<App<StaticRules>> =
    LazyLock::new(|| app(enforced(&[SAMPLE_TOKEN]), FailPolicy::DoNotRecord));

/// (status, body) of an API Gateway response, checked for shape.
fn check(response: &Value) -> (u16, Value) {
    let status = response["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or_else(|| panic!("no statusCode: {response}"));
    assert_ne!(response["isBase64Encoded"], true, "{response}");
    let media = response["headers"]["content-type"]
        .as_str()
        .or_else(|| response["multiValueHeaders"]["content-type"][0].as_str());
    assert_eq!(media, Some("application/json"), "{response}");
    let text = response["body"]
        .as_str()
        .unwrap_or_else(|| panic!("no body: {response}"));
    (status, check_answer(status, text))
}

fn invoke(app: &App<StaticRules>, event: LambdaRequest) -> (u16, Value) {
    let response = block_on(lambda::answer(
        app,
        LambdaEvent::new(event, Context::default()),
    ));
    check(&response)
}

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<LambdaRequest>(data) else {
        return;
    };
    let Ok(again) = serde_json::from_slice::<LambdaRequest>(data) else {
        panic!("an event that deserialised once deserialises again");
    };
    let open = invoke(&OPEN, event);
    let signed = invoke(&SIGNED, again);
    assert_ne!(
        open.0, 403,
        "nothing but a signature or account is refused with 403"
    );
    assert!(
        signed == open || signed.0 == 403,
        "enforcing signatures only adds 403s: open {open:?}, signed {signed:?}"
    );
});
