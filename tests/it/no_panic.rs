//! No input panics: arbitrary rules documents, form bodies, TaskAttributes and requests all
//! end in a value, an error or an HTTP answer.

use conditional_recording::handler::BodyProblem;
use conditional_recording::rules::{EXAMPLE_DOCUMENT, FailPolicy, Rules, Task};
use conditional_recording::taskrouter::{self, AssignmentCallback};
use conditional_recording::wiring::Settings;
use lambda_http::http::Method;
use lambda_http::{Body, Request};
use proptest::prelude::*;
use serde_json::Value;

/// JSON-ish text: real JSON fragments glued with noise, so the parser gets far.
fn jsonish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just("\"enabled\"".to_owned()),
        Just("true".to_owned()),
        Just("\"exclude_attributes\"".to_owned()),
        Just("\"exclude_queues\"".to_owned()),
        Just("\"key\"".to_owned()),
        Just("\"value\"".to_owned()),
        Just("\"regex\"".to_owned()),
        Just("\"all\"".to_owned()),
        Just("\"pointer\"".to_owned()),
        Just("\"any_of\"".to_owned()),
        Just("null".to_owned()),
        "-?[0-9]{1,20}(\\.[0-9]{1,5})?(e[+-]?[0-9]{1,4})?",
        "\"[^\"\\\\]{0,12}\"",
        "[ -~]{0,3}",
    ];
    prop::collection::vec(token, 0..60).prop_map(|t| t.concat())
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z._/~0-9]{0,8}".prop_map(Value::String),
        "\\PC{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("enabled".to_owned()),
                        Just("exclude_attributes".to_owned()),
                        Just("key".to_owned()),
                        Just("value".to_owned()),
                        Just("all".to_owned()),
                        Just("regex".to_owned()),
                        "[a-z_]{1,8}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn rules_documents_never_panic(text in jsonish()) {
        let _ = Rules::from_json(&text);
    }

    #[test]
    fn rules_values_never_panic(document in arbitrary_json(), attributes in arbitrary_json()) {
        if let Ok(rules) = Rules::from_value(&document) {
            let task = Task { attributes: &attributes, queue_sid: None, queue_name: Some("q"), channel: None };
            let _ = rules.decide(&task, FailPolicy::DoNotRecord);
        }
    }

    #[test]
    fn decisions_never_panic(attributes in arbitrary_json(), sid in "WQ[0-9a-f]{32}") {
        let rules = Rules::from_json(r#"{"enabled": true, "exclude_queues": ["Payments"],
            "exclude_attributes": [{"key": "a.0.b", "value": 1}, {"pointer": "/x/~0", "regex": "^\\d+$"},
            {"key": "from", "any_of": ["+1", 2, true]}, {"all": [{"key": "p", "prefix": "x"}, {"key": "q", "exists": false}]}]}"#).unwrap();
        let task = Task { attributes: &attributes, queue_sid: Some(&sid), queue_name: None, channel: None };
        let _ = rules.decide(&task, FailPolicy::Record);
    }

    #[test]
    fn form_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = AssignmentCallback::from_form(&body);
    }

    #[test]
    fn form_shaped_bodies_never_panic(pairs in prop::collection::vec(("(TaskSid|ReservationSid|TaskAttributes|TaskQueueSid|AccountSid|[A-Za-z%+&=]{0,6})", "\\PC{0,20}"), 0..8)) {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
        let _ = AssignmentCallback::from_form(body.as_bytes());
    }

    #[test]
    fn task_attributes_never_panic(text in jsonish()) {
        let _ = taskrouter::parse_attributes(&text);
    }

    #[test]
    fn requests_never_panic(
        method in prop_oneof![Just(Method::POST), Just(Method::GET), Just(Method::PUT), Just(Method::OPTIONS)],
        path in prop_oneof![Just("/assignment".to_owned()), "/[a-z%./]{0,16}"],
        content_type in prop_oneof![Just(Some("application/x-www-form-urlencoded")), Just(Some("application/json")), Just(None)],
        body in prop::collection::vec(any::<u8>(), 0..256),
        problem in prop_oneof![Just(None), Just(Some(BodyProblem::Undecodable)), Just(Some(BodyProblem::TooLarge))],
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let app = crate::support::app_on(EXAMPLE_DOCUMENT, Settings::default());
        let mut builder = lambda_http::http::Request::builder().method(method).uri(path.as_str());
        if let Some(content_type) = content_type {
            builder = builder.header("content-type", content_type);
        }
        let mut request: Request = match builder.body(Body::Binary(body)) {
            Ok(request) => request,
            Err(_) => return Ok(()),
        };
        if let Some(problem) = problem {
            request.extensions_mut().insert(problem);
        }
        let response = runtime.block_on(app.handle(request));
        let status = response.status().as_u16();
        prop_assert!(status == 200 || (400..500).contains(&status), "status {status}");
        let body = match response.body() { Body::Text(t) => t.clone(), _ => String::new() };
        prop_assert!(serde_json::from_str::<Value>(&body).is_ok(), "not JSON: {body}");
    }
}
