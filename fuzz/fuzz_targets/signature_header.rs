//! X-Twilio-Signature: what `sign` produces for a URL and parameters is accepted, for the
//! URL with and without its default port; any other header value is accepted only when it
//! decodes to that same HMAC. Through the handler, a callback gets a decision only with a
//! valid signature, and a bad one is a 403, never anything else.
// The service's futures, generic over six ports, nest deeper than the default limit allows.
#![recursion_limit = "256"]

#![no_main]

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use conditional_recording::rules::FailPolicy;
use conditional_recording::signature::{is_valid, sign, url_variants};
use conditional_recording::sources::StaticRules;
use conditional_recording::taskrouter::parse_form;
use conditional_recording::wiring::App;
use conditional_recording_fuzz::{SAMPLE_TOKEN, app, block_on, check_response, enforced};
use lambda_http::http::{HeaderValue, Method};
use lambda_http::{Body, Request};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

const OLD_TOKEN: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const HOST: &str = "127.0.0.1:3000";
const SIGNED_URL: &str = "http://127.0.0.1:3000/assignment";

static APP: LazyLock<App<StaticRules>> = LazyLock::new(|| {
    app(
        enforced(&[OLD_TOKEN, SAMPLE_TOKEN]),
        FailPolicy::DoNotRecord,
    )
});

/// A callback's documented parameters, so some inputs reach a decision.
const CALLBACK: &[(&str, &str)] = &[
    ("AccountSid", "AC00000000000000000000000000000000"),
    ("TaskSid", "WT00000000000000000000000000000000"),
    ("ReservationSid", "WR00000000000000000000000000000000"),
    ("TaskQueueSid", "WQ11111111111111111111111111111111"),
    (
        "TaskAttributes",
        r#"{"call_sid":"CA1","direction":"inbound"}"#,
    ),
];

/// The header value a fuzz input chooses: its own bytes, or a real signature, perhaps for
/// the other URL form or another token, perhaps padded or cut.
fn header(u: &mut Unstructured<'_>, params: &[(String, String)]) -> Result<String> {
    let real = |token: &str, url: &str| sign(token, url, params);
    Ok(match u.int_in_range(0..=5)? {
        0 => real(SAMPLE_TOKEN, SIGNED_URL),
        1 => real(OLD_TOKEN, "http://127.0.0.1:3000/assignment"),
        2 => format!(
            "{}{}",
            u.arbitrary::<&str>()?,
            real(SAMPLE_TOKEN, SIGNED_URL)
        ),
        3 => {
            let mut text = real(SAMPLE_TOKEN, SIGNED_URL);
            text.truncate(u.int_in_range(0..=text.len())?);
            text
        }
        4 => real("ffffffffffffffffffffffffffffffff", SIGNED_URL),
        _ => u.arbitrary()?,
    })
}

fn params(u: &mut Unstructured<'_>) -> Result<Vec<(String, String)>> {
    let mut params: Vec<(String, String)> = if u.arbitrary()? {
        CALLBACK
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    } else {
        Vec::new()
    };
    let extra: Vec<(String, String)> = u.arbitrary()?;
    params.extend(extra);
    Ok(params)
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let token: String = u.arbitrary()?;
    let url: String = u.arbitrary()?;
    let params = params(&mut u)?;
    let candidate: String = u.arbitrary()?;

    // What `sign` signs is valid, for every accepted form of the URL.
    if !token.is_empty() {
        let tokens = [token.as_str()];
        for variant in url_variants(&url) {
            let signature = sign(&token, &variant, &params);
            assert!(is_valid(&tokens, &url, &params, &signature), "{variant}");
        }
        // Any other value is valid only when it decodes to one of those HMACs.
        let expected: Vec<Vec<u8>> = url_variants(&url)
            .iter()
            .map(|v| STANDARD.decode(sign(&token, v, &params)).expect("base64"))
            .collect();
        let decodes_to_one = candidate.len() <= 64
            && STANDARD
                .decode(candidate.trim())
                .is_ok_and(|bytes| expected.contains(&bytes));
        assert_eq!(is_valid(&tokens, &url, &params, &candidate), decodes_to_one);
    }

    // The handler: a form of these parameters, signed (or not) for the URL it is sent to.
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let sent = parse_form(body.as_bytes()).expect("a serialised form parses");
    let value = header(&mut u, &sent)?;
    let mut request: Request = lambda_http::http::Request::builder()
        .method(Method::POST)
        .uri("/assignment")
        .header("host", HOST)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::Binary(body.into_bytes()))
        .expect("a well-formed request");
    let present = HeaderValue::from_bytes(value.as_bytes()).ok();
    if let Some(header) = &present {
        request
            .headers_mut()
            .insert("x-twilio-signature", header.clone());
    }
    let (status, answer) = check_response(&block_on(APP.handle(request)));
    // A header that is not visible ASCII cannot be read as text, and counts as missing.
    let readable = present.as_ref().is_some_and(|h| h.to_str().is_ok());
    let valid = readable && is_valid(&[OLD_TOKEN, SAMPLE_TOKEN], SIGNED_URL, &sent, &value);
    if valid {
        assert_ne!(status, 403, "a valid signature is accepted: {answer}");
    } else {
        assert_eq!(
            status, 403,
            "an invalid or missing signature is refused: {answer}"
        );
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
