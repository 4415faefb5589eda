//! Real-shaped API Gateway events (REST v1, HTTP API v2, a function URL) through
//! `lambda_http` and the shared handler, as Lambda mode runs them.

use crate::support::TOKEN;
use crate::support::{app_on, enforced, invoke_lambda, lambda_event, with_form};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use conditional_recording::lambda;
use conditional_recording::rules::{EXAMPLE_DOCUMENT, FailPolicy};
use conditional_recording::sources::StaticRules;
use conditional_recording::wiring::{App, Settings};
use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent};
use serde_json::{Value, json};

fn app(policy: FailPolicy) -> App<StaticRules> {
    app_on(
        EXAMPLE_DOCUMENT,
        Settings {
            fail_policy: policy,
            ..Settings::default()
        },
    )
}

fn set(form: &mut [(String, String)], name: &str, value: &str) {
    form.iter_mut().find(|(k, _)| k == name).unwrap().1 = value.to_owned();
}

#[tokio::test]
async fn every_api_gateway_flavour_gets_a_decision() {
    let app = app(FailPolicy::DoNotRecord);
    for name in [
        "http-api-default-stage.json",
        "http-api-named-stage.json",
        "rest-api-prod-stage.json",
        "function-url.json",
    ] {
        let (status, headers, body) = invoke_lambda(&app, lambda_event(name)).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(
            headers["content-type"], "application/json",
            "{name}: {headers}"
        );
        assert_eq!(
            body,
            json!({"instruction": "conference", "conference_record": "record-from-start"}),
            "{name}"
        );
    }
}

#[tokio::test]
async fn outbound_calls_and_excluded_queues_are_not_recorded() {
    let app = app(FailPolicy::DoNotRecord);
    for name in ["http-api-default-stage.json", "rest-api-prod-stage.json"] {
        let outbound = with_form(lambda_event(name), |f| {
            set(
                f,
                "TaskAttributes",
                r#"{"direction":"outbound","call_sid":"CA56565656565656565656565656565656"}"#,
            )
        });
        let (status, _, body) = invoke_lambda(&app, outbound).await;
        assert_eq!(
            (status, &body["conference_record"]),
            (200, &json!("do-not-record")),
            "{name}"
        );
        // The Flex dialer's call has no call_sid and Flex accepts it itself.
        let dialer = with_form(lambda_event(name), |f| {
            set(
                f,
                "TaskAttributes",
                r#"{"direction":"outbound","outbound_to":"+14155550123"}"#,
            )
        });
        assert_eq!(invoke_lambda(&app, dialer).await.2, json!({}), "{name}");

        let payments = with_form(lambda_event(name), |f| {
            set(f, "TaskQueueSid", "WQ00000000000000000000000000000000")
        });
        let (_, _, body) = invoke_lambda(&app, payments).await;
        assert_eq!(body["conference_record"], "do-not-record", "{name}");
    }
}

#[tokio::test]
async fn a_chat_task_gets_no_instruction() {
    let chat = with_form(lambda_event("http-api-named-stage.json"), |f| {
        set(
            f,
            "TaskAttributes",
            r#"{"channelType":"web","direction":"inbound","from":"Visitor 4821"}"#,
        )
    });
    let (status, _, body) = invoke_lambda(&app(FailPolicy::DoNotRecord), chat).await;
    assert_eq!((status, body), (200, json!({})));
}

#[tokio::test]
async fn unparseable_attributes_follow_the_fail_policy() {
    for (policy, expected) in [
        (FailPolicy::DoNotRecord, "do-not-record"),
        (FailPolicy::Record, "record-from-start"),
    ] {
        let broken = with_form(lambda_event("function-url.json"), |f| {
            set(f, "TaskAttributes", "{\"call_sid\": ")
        });
        let (status, _, body) = invoke_lambda(&app(policy), broken).await;
        assert_eq!(
            (status, body),
            (
                200,
                json!({"instruction": "conference", "conference_record": expected})
            )
        );
    }
}

#[tokio::test]
async fn routing_and_method_errors() {
    let app = app(FailPolicy::DoNotRecord);
    let (status, headers, body) = invoke_lambda(&app, lambda_event("http-api-get.json")).await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(headers["allow"], "POST");
    let (status, _, body) = invoke_lambda(&app, lambda_event("http-api-unknown-path.json")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("/assignment"));

    // The stage is part of the path only when it prefixes it: /Prod itself is no route.
    let mut rest = lambda_event("rest-api-prod-stage.json");
    rest["path"] = json!("/Prod");
    let (status, _, _) = invoke_lambda(&app, rest).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn malformed_bodies_get_a_clear_400_not_a_panic() {
    let app = app(FailPolicy::DoNotRecord);

    let mut bad_base64 = lambda_event("http-api-default-stage.json");
    bad_base64["body"] = json!("this is %%% not base64");
    let (status, _, body) = invoke_lambda(&app, bad_base64).await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error": "the event's body is not valid base64"})
        )
    );

    let mut not_a_form = lambda_event("http-api-default-stage.json");
    not_a_form["headers"]["content-type"] = json!("application/json");
    let (status, _, body) = invoke_lambda(&app, not_a_form).await;
    assert_eq!(status, 400, "{body}");

    for field in ["TaskSid", "ReservationSid", "TaskAttributes"] {
        let missing = with_form(lambda_event("rest-api-prod-stage.json"), |f| {
            f.retain(|(k, _)| k != field)
        });
        let (status, _, body) = invoke_lambda(&app, missing).await;
        assert_eq!(
            (status, body),
            (400, json!({"error": format!("{field} is missing")}))
        );
    }

    let mut binary = lambda_event("function-url.json");
    binary["body"] = json!(STANDARD.encode([0xff, 0xfe, b'=', 0x00]));
    let (status, _, body) = invoke_lambda(&app, binary).await;
    assert_eq!(
        (status, body),
        (400, json!({"error": "the body is not UTF-8 form data"}))
    );

    let mut empty = lambda_event("http-api-default-stage.json");
    empty["body"] = Value::Null;
    let (status, _, body) = invoke_lambda(&app, empty).await;
    assert_eq!(
        (status, body),
        (400, json!({"error": "TaskSid is missing"}))
    );
}

#[tokio::test]
async fn oversized_bodies_get_413_before_decoding() {
    let app = app(FailPolicy::DoNotRecord);
    let padding = "x".repeat(300 * 1024);
    for name in ["http-api-default-stage.json", "rest-api-prod-stage.json"] {
        let big = with_form(lambda_event(name), |f| {
            f.push(("Padding".into(), padding.clone()))
        });
        let (status, _, body) = invoke_lambda(&app, big).await;
        assert_eq!(status, 413, "{name}: {body}");
    }
    let mut huge_base64 = lambda_event("http-api-default-stage.json");
    huge_base64["body"] = json!("A".repeat(2 << 20));
    let (status, _, _) = invoke_lambda(&app, huge_base64).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn hostile_hosts_paths_and_queries_get_a_400_not_a_panic() {
    let app = app(FailPolicy::DoNotRecord);
    type Edit = Box<dyn Fn(&mut Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "host with a space",
            Box::new(|e| e["headers"]["host"] = json!("exa mple.com")),
        ),
        (
            "host with a slash",
            Box::new(|e| e["headers"]["host"] = json!("[::")),
        ),
        (
            "bad scheme",
            Box::new(|e| e["headers"]["x-forwarded-proto"] = json!("ht tp")),
        ),
        (
            "query with a quote and space",
            Box::new(|e| e["rawQueryString"] = json!("a=\"b c\"")),
        ),
        (
            "path with a bracket",
            Box::new(|e| e["rawPath"] = json!("/assign[ment")),
        ),
        (
            "path without a slash",
            Box::new(|e| e["rawPath"] = json!("@evil.example/assignment")),
        ),
    ];
    for (name, edit) in edits {
        let mut hostile = lambda_event("http-api-named-stage.json");
        edit(&mut hostile);
        let (status, _, body) = invoke_lambda(&app, hostile).await;
        assert!(
            status == 400 || status == 404,
            "{name}: got {status} {body}"
        );
    }
    let mut rest = lambda_event("rest-api-prod-stage.json");
    rest["headers"]["Host"] = json!("a b");
    let (status, _, body) = invoke_lambda(&app, rest).await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error": "the request's host, path or query is malformed"})
        )
    );
}

fn signing_app() -> App<StaticRules> {
    app_on(
        EXAMPLE_DOCUMENT,
        Settings {
            signatures: enforced(None),
            ..Settings::default()
        },
    )
}

/// The event's form parameters, as TaskRouter signed them.
fn params(event: &Value) -> Vec<(String, String)> {
    let body = event["body"].as_str().unwrap();
    let bytes = if event["isBase64Encoded"].as_bool().unwrap_or(false) {
        STANDARD.decode(body).unwrap()
    } else {
        body.as_bytes().to_vec()
    };
    form_urlencoded::parse(&bytes).into_owned().collect()
}

#[tokio::test]
async fn the_called_url_is_rebuilt_exactly_for_every_flavour_and_signatures_hold() {
    use conditional_recording::signature::sign;
    let app = signing_app();
    let cases = [
        (
            "http-api-default-stage.json",
            "https://abc123.execute-api.us-east-1.amazonaws.com/assignment",
        ),
        (
            "http-api-named-stage.json",
            "https://abc123.execute-api.us-east-1.amazonaws.com/live/assignment?tenant=acme&x=a%20b",
        ),
        (
            "rest-api-prod-stage.json",
            "https://abc123.execute-api.us-east-1.amazonaws.com/Prod/assignment",
        ),
        (
            "function-url.json",
            "https://abcdefghijklmnop.lambda-url.us-east-1.on.aws/assignment",
        ),
    ];
    for (name, url) in cases {
        let payload: LambdaRequest = serde_json::from_value(lambda_event(name)).unwrap();
        let request = lambda::into_request(payload);
        assert_eq!(
            conditional_recording::handler::called_url(&request).as_deref(),
            Some(url),
            "{name}"
        );

        let mut signed = lambda_event(name);
        let signature = sign(TOKEN, url, &params(&signed));
        set_header(&mut signed, "x-twilio-signature", &signature);
        let (status, _, body) = invoke_lambda(&app, signed.clone()).await;
        assert_eq!(status, 200, "{name}: {body}");

        // The same event signed for the URL without its stage is refused.
        let stageless = url.replace("/live/", "/").replace("/Prod/", "/");
        if stageless != url {
            let signature = sign(TOKEN, &stageless, &params(&signed));
            set_header(&mut signed, "x-twilio-signature", &signature);
            let (status, _, _) = invoke_lambda(&app, signed).await;
            assert_eq!(status, 403, "{name}: the stage is part of the signed URL");
        }

        // The placeholder signature the fixture carries is refused.
        let (status, _, body) = invoke_lambda(&app, lambda_event(name)).await;
        assert_eq!(
            (status, body),
            (
                403,
                json!({"error": "X-Twilio-Signature is not valid for this URL and body"})
            ),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_rest_api_query_string_needs_public_url_and_is_never_checked_by_chance() {
    use conditional_recording::signature::sign;
    use conditional_recording::wiring::Signatures;
    let url = "https://abc123.execute-api.us-east-1.amazonaws.com/Prod/assignment?tenant=acme&site=east&x=a%20b";
    let mut signed = lambda_event("rest-api-prod-stage.json");
    signed["queryStringParameters"] = json!({"tenant": "acme", "site": "east", "x": "a b"});
    signed["multiValueQueryStringParameters"] =
        json!({"tenant": ["acme"], "site": ["east"], "x": ["a b"]});
    let signature = sign(TOKEN, url, &params(&signed));
    set_header(&mut signed, "x-twilio-signature", &signature);

    // Without PUBLIC_URL the query cannot be rebuilt as signed: refused every time, not by
    // the luck of a hash map's order.
    let app = signing_app();
    for _ in 0..8 {
        let (status, _, body) = invoke_lambda(&app, signed.clone()).await;
        assert_eq!(status, 403, "{body}");
    }
    // With PUBLIC_URL naming the callback URL, the same event is answered.
    let mut app = signing_app();
    if let Signatures::Enforce { public_url, .. } = &mut app.settings.signatures {
        *public_url = Some(url.to_owned());
    }
    let (status, _, body) = invoke_lambda(&app, signed).await;
    assert_eq!(status, 200, "{body}");
}

/// Sets a header in both header maps a REST event has.
fn set_header(event: &mut Value, name: &str, value: &str) {
    event["headers"][name] = json!(value);
    if event["multiValueHeaders"].is_object() {
        event["multiValueHeaders"][name] = json!([value]);
    }
}

/// Sends an event's JSON text through Lambda mode's whole path, as the runtime hands it over.
async fn invoke_text(
    app: &App<StaticRules>,
    text: &str,
) -> Result<Value, lambda::NotAnApiGatewayEvent> {
    let raw = serde_json::value::RawValue::from_string(text.to_owned()).expect("JSON text");
    lambda::answer_event(app, LambdaEvent::new(raw, Context::default())).await
}

#[tokio::test]
async fn an_event_with_more_header_names_than_any_request_is_431_not_a_crash() {
    let app = signing_app();
    for name in ["http-api-default-stage.json", "rest-api-prod-stage.json"] {
        for (count, status) in [(lambda::MAX_HEADER_NAMES - 40, 403), (25_000, 431)] {
            let mut padded = lambda_event(name);
            for i in 0..count {
                padded["headers"][format!("x-pad-{i}")] = json!("v");
            }
            // 25,000 names made `http`'s header map panic, which stopped the process.
            let answer = invoke_text(&app, &padded.to_string())
                .await
                .expect("an answer");
            assert_eq!(
                answer["statusCode"], status,
                "{name} with {count} more headers"
            );
        }
        let mut multi = lambda_event(name);
        multi["multiValueHeaders"] = json!({});
        for i in 0..25_000 {
            multi["multiValueHeaders"][format!("x-pad-{i}")] = json!(["v"]);
        }
        let answer = invoke_text(&app, &multi.to_string())
            .await
            .expect("an answer");
        assert_eq!(answer["statusCode"], 431, "{name}");
    }
    let not_api_gateway = r#"{"Records": [{"eventSource": "aws:sqs", "body": "x"}]}"#;
    assert!(invoke_text(&app, not_api_gateway).await.is_err());
    let answered = invoke_text(
        &app,
        &lambda_event("http-api-default-stage.json").to_string(),
    )
    .await;
    assert_eq!(answered.expect("an answer")["statusCode"], 403);
}

#[tokio::test]
async fn a_rest_api_query_too_long_for_a_uri_is_400_not_a_panic() {
    let app = signing_app();
    let mut long = lambda_event("rest-api-prod-stage.json");
    long["queryStringParameters"] = json!({"a": "x".repeat(70_000)});
    long["multiValueQueryStringParameters"] = json!({"a": ["x".repeat(70_000)]});
    let (status, _, body) = invoke_lambda(&app, long).await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error": "the request's host, path or query is malformed"})
        )
    );
}
