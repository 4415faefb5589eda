//! Twilio's own SDKs agree with our validator. PyPI `twilio` (`RequestValidator`) and npm
//! `twilio` (`getExpectedTwilioSignature`, `validateRequest`) sign a few hundred generated
//! callbacks; `signature::sign` gives the same signature for every one, `is_valid` accepts it
//! with and without the default port as the SDKs do, and refuses every tampered variant.
//! The same callbacks as JSON deliveries (Event Streams: the URL signed alone, the body's
//! SHA-256 in its `bodySHA256`) are judged alike by `signature::check_with_body`, Python's
//! `validate` with the body and npm's `validateRequestWithBody`.
//!
//! The SDKs are installed by `make test` (`.venv`, `tests/sdk/node_modules`); without them
//! this test fails rather than skips.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;

use conditional_recording::signature::{
    BodySignature, check_with_body, is_valid, sha256_hex, sign, signed_payload, url_variants,
};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde::Deserialize;
use serde_json::json;

/// How many cases are generated: the same ones on every run, from a fixed seed.
const CASES: usize = 400;
const SEED: &[u8; 32] = b"conditional-recording signatures";

const INSTALL_HINT: &str =
    "run `make test`, which installs Twilio's SDKs into .venv and tests/sdk/node_modules";

/// The parameters TaskRouter documents for an assignment callback (SPEC section 2).
const DOCUMENTED: [&str; 12] = [
    "Timestamp",
    "AccountSid",
    "WorkspaceSid",
    "WorkflowSid",
    "TaskQueueSid",
    "WorkerSid",
    "WorkerAttributes",
    "TaskSid",
    "TaskAttributes",
    "TaskAge",
    "TaskPriority",
    "ReservationSid",
];

/// One callback to sign, and what its tampered variants change.
#[derive(Debug, Clone)]
struct Case {
    token: String,
    url: String,
    params: Vec<(String, String)>,
    other_token: String,
    /// Which parameter is changed or removed.
    param: Index,
    /// Which signature character is flipped, and to which base64 character.
    flip_at: Index,
    flip_to: Index,
}

const HOSTS: &[&str] = &[
    "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
    "recording.example.com",
    "127.0.0.1",
    "localhost",
];
const STAGES: &[&str] = &["", "/Prod", "/dev", "/v1"];
const PATH_PIECES: &[&str] = &[
    "callback", "a+b", "it's", "a%20b", "%2B", "é", "%C3%A9", "日本", "😀", "~me", "-_.",
];
/// Few query names, so that repeats are common.
const QUERY_NAMES: &[&str] = &["a", "b", "token", "é", "a+b", "it's", "%20", "日本", ""];
const QUERY_PIECES: &[&str] = &[
    "1",
    "abc",
    "+",
    "'",
    "%20",
    "%2B",
    "%27",
    "é",
    "日本",
    "😀",
    "ｆ",
    "%C3%A9",
    "%E6%97%A5",
    "%F0%9F%98%80",
    "=",
    "/",
    "%26",
];
/// Parameter names, including JavaScript's special ones and both sides of the UTF-16 order
/// quirk (U+1F600 against U+FF46 and U+FFFD).
const NAMES: &[&str] = &[
    "a",
    "b",
    "B",
    "Body",
    "From",
    "To",
    "_",
    "0",
    "10",
    "2",
    "",
    "é",
    "e\u{301}",
    "名前",
    "ｆｕｌｌ",
    "😀",
    "😀x",
    "\u{FFFD}",
    "__proto__",
    "constructor",
    "a b",
    "a+b",
    "a&b",
    "a=b",
];
const VALUES: &[&str] = &[
    "",
    " ",
    "1",
    "+14155550100",
    "it's",
    "a&b=c",
    "100%",
    "%20",
    "é",
    "😀",
    "ｆ",
    r#"{"a":"b"}"#,
    "line\nbreak",
    "null",
];
/// Few values, so that identical repeats are common.
const REPEATED_VALUES: &[&str] = &["1", "2", "", "a", "é", "😀", "ｆ"];

fn pieces(pool: &'static [&'static str], count: Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(select(pool), count).prop_map(|pieces| pieces.concat())
}

fn token() -> impl Strategy<Value = String> {
    "[0-9a-f]{32}"
}

fn url() -> impl Strategy<Value = String> {
    let port = prop_oneof![
        3 => Just(None),
        2 => Just(Some(443)),
        2 => Just(Some(80)),
        1 => Just(Some(8443)),
        1 => Just(Some(3000)),
    ];
    let path = prop_oneof![
        3 => Just("/assignment".to_owned()),
        1 => prop::collection::vec(pieces(PATH_PIECES, 1..3), 1..4)
            .prop_map(|segments| format!("/{}", segments.join("/"))),
    ];
    let pair = (
        select(QUERY_NAMES),
        prop::option::weighted(0.8, pieces(QUERY_PIECES, 0..4)),
    );
    let query = prop::option::weighted(0.6, prop::collection::vec(pair, 1..6));
    (
        prop_oneof![Just("https"), Just("http")],
        select(HOSTS),
        port,
        select(STAGES),
        path,
        query,
    )
        .prop_map(|(scheme, host, port, stage, path, query)| {
            let mut url = format!("{scheme}://{host}");
            if let Some(port) = port {
                let _ = write!(url, ":{port}");
            }
            url.push_str(stage);
            url.push_str(&path);
            let query: Vec<String> = query
                .unwrap_or_default()
                .into_iter()
                .map(|(name, value)| match value {
                    Some(value) => format!("{name}={value}"),
                    None => name.to_owned(),
                })
                .collect();
            // A bare `?` is left out: nothing TaskRouter is configured with ends in one.
            if !query.concat().is_empty() {
                url.push('?');
                url.push_str(&query.join("&"));
            }
            url
        })
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![3 => select(NAMES).prop_map(str::to_owned), 1 => "\\PC{1,6}"]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => select(VALUES).prop_map(str::to_owned),
        2 => "\\PC{0,16}",
        1 => "[\\PC\n\t]{0,8}",
    ]
}

fn sid(prefix: &'static str) -> impl Strategy<Value = String> {
    "[0-9a-f]{32}".prop_map(move |hex| format!("{prefix}{hex}"))
}

/// What TaskRouter posts: every documented parameter, JSON attributes, maybe extras.
fn taskrouter_params() -> impl Strategy<Value = Vec<(String, String)>> {
    let sids = (
        sid("AC"),
        sid("WS"),
        sid("WW"),
        sid("WQ"),
        sid("WK"),
        sid("WT"),
        sid("WR"),
    );
    let numbers = ("1[0-9]{9}", "[0-9]{1,5}", "[0-9]{1,3}");
    let people = (
        "\\PC{0,16}",
        "\\+1[0-9]{10}",
        "\\+1[0-9]{10}",
        select(&["inbound", "outbound"][..]),
        "[a-z ]{1,12}",
    );
    let extras = prop::collection::vec((name(), value()), 0..3);
    (sids, numbers, people, extras)
        .prop_map(|(sids, numbers, people, extras)| {
            let (account, workspace, workflow, queue, worker, task, reservation) = sids;
            let (timestamp, age, priority) = numbers;
            let (customer, from, to, direction, skill) = people;
            let task_attributes = json!({
                "call_sid": format!("CA{}", &task[2..]),
                "direction": direction,
                "from": from,
                "to": to,
                "caller": from,
                "called": to,
                "name": customer,
                "conference": {"sid": format!("CF{}", &reservation[2..])},
                "conversations": {"segment_link": format!("https://example.com/s?it's=1&q={customer}")},
            });
            let worker_attributes = json!({
                "contact_uri": "client:alice",
                "full_name": "Álice O'Neil 😀",
                "routing": {"skills": [skill], "levels": {skill.as_str(): 5}},
            });
            [
                ("Timestamp", timestamp),
                ("AccountSid", account),
                ("WorkspaceSid", workspace),
                ("WorkflowSid", workflow),
                ("TaskQueueSid", queue),
                ("WorkerSid", worker),
                ("WorkerAttributes", worker_attributes.to_string()),
                ("TaskSid", task),
                ("TaskAttributes", task_attributes.to_string()),
                ("TaskAge", age),
                ("TaskPriority", priority),
                ("ReservationSid", reservation),
            ]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .chain(extras)
            .collect::<Vec<_>>()
        })
        .prop_shuffle()
}

/// One name sent several times, identical values among them, with other parameters.
fn repeated_params() -> impl Strategy<Value = Vec<(String, String)>> {
    (
        name(),
        prop::collection::vec(select(REPEATED_VALUES), 2..6),
        prop::collection::vec((name(), value()), 0..4),
    )
        .prop_map(|(name, values, others)| {
            values
                .into_iter()
                .map(|value| (name.clone(), value.to_owned()))
                .chain(others)
                .collect::<Vec<_>>()
        })
        .prop_shuffle()
}

fn fifty_params() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(value(), 50)
        .prop_map(|values| {
            values
                .into_iter()
                .enumerate()
                .map(|(i, value)| (format!("Param{i}"), value))
                .collect::<Vec<_>>()
        })
        .prop_shuffle()
}

fn params() -> impl Strategy<Value = Vec<(String, String)>> {
    prop_oneof![
        3 => taskrouter_params(),
        2 => prop::collection::vec((name(), value()), 0..10),
        2 => repeated_params(),
        1 => fifty_params(),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        (token(), url(), params()),
        (token(), any::<Index>(), any::<Index>(), any::<Index>()),
    )
        .prop_map(
            |((token, url, params), (other_token, param, flip_at, flip_to))| Case {
                token,
                url,
                params,
                other_token,
                param,
                flip_at,
                flip_to,
            },
        )
}

fn generate() -> Vec<Case> {
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, SEED);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = case();
    (0..CASES)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .expect("no strategy here rejects a value")
                .current()
        })
        .collect()
}

fn query(url: &str) -> Option<&str> {
    url.split_once('?').map(|(_, query)| query)
}

/// The authority's port, if any (the generated hosts have no other ':').
fn port(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    authority.split_once(':').map(|(_, port)| port)
}

fn has_default_port(url: &str) -> bool {
    matches!(
        (url.split_once("://").map(|(s, _)| s), port(url)),
        (Some("https"), Some("443")) | (Some("http"), Some("80"))
    )
}

/// How many cases show each thing the cross-check must cover.
fn coverage(cases: &[Case]) -> Vec<(String, usize)> {
    let count = |f: &dyn Fn(&Case) -> bool| cases.iter().filter(|case| f(case)).count();
    let in_query =
        |needle: &'static str| move |c: &Case| query(&c.url).is_some_and(|q| q.contains(needle));
    let mut table: Vec<(String, usize)> = vec![
        ("https".into(), count(&|c| c.url.starts_with("https://"))),
        ("http".into(), count(&|c| c.url.starts_with("http://"))),
        ("no port".into(), count(&|c| port(&c.url).is_none())),
        (
            "default port (:443, :80)".into(),
            count(&|c| has_default_port(&c.url)),
        ),
        (
            "other port".into(),
            count(&|c| port(&c.url).is_some() && !has_default_port(&c.url)),
        ),
        (
            "stage prefix".into(),
            count(&|c| {
                ["/Prod/", "/dev/", "/v1/"]
                    .iter()
                    .any(|s| c.url.contains(s))
            }),
        ),
        ("query with +".into(), count(&in_query("+"))),
        ("query with '".into(), count(&in_query("'"))),
        ("query with %20".into(), count(&in_query("%20"))),
        ("query with %2B".into(), count(&in_query("%2B"))),
        (
            "query with raw unicode".into(),
            count(&|c| query(&c.url).is_some_and(|q| !q.is_ascii())),
        ),
        (
            "query with percent-encoded unicode".into(),
            count(&in_query("%C3%A9")),
        ),
        (
            "query with an empty value".into(),
            count(&|c| {
                query(&c.url).is_some_and(|q| {
                    q.split('&')
                        .any(|p| p.split_once('=').is_some_and(|(_, v)| v.is_empty()))
                })
            }),
        ),
        (
            "query with a repeated name".into(),
            count(&|c| {
                query(&c.url).is_some_and(|q| {
                    let names: Vec<&str> = q
                        .split('&')
                        .map(|p| p.split('=').next().unwrap_or(p))
                        .collect();
                    names
                        .iter()
                        .enumerate()
                        .any(|(i, n)| names[..i].contains(n))
                })
            }),
        ),
        ("no parameters".into(), count(&|c| c.params.is_empty())),
        ("50 parameters".into(), count(&|c| c.params.len() >= 50)),
        (
            "a non-ASCII name".into(),
            count(&|c| c.params.iter().any(|(k, _)| !k.is_ascii())),
        ),
        (
            "a non-ASCII value".into(),
            count(&|c| c.params.iter().any(|(_, v)| !v.is_ascii())),
        ),
        (
            "an empty value".into(),
            count(&|c| c.params.iter().any(|(_, v)| v.is_empty())),
        ),
        (
            "a name with different values".into(),
            count(&|c| {
                c.params
                    .iter()
                    .enumerate()
                    .any(|(i, (k, v))| c.params[..i].iter().any(|(k2, v2)| k2 == k && v2 != v))
            }),
        ),
        (
            "an identical repeat".into(),
            count(&|c| {
                c.params
                    .iter()
                    .enumerate()
                    .any(|(i, p)| c.params[..i].contains(p))
            }),
        ),
        (
            "TaskAttributes JSON".into(),
            count(&|c| {
                c.params
                    .iter()
                    .any(|(k, v)| k == "TaskAttributes" && v.starts_with('{'))
            }),
        ),
    ];
    for documented in DOCUMENTED {
        table.push((
            documented.to_owned(),
            count(&|c| c.params.iter().any(|(k, _)| k == documented)),
        ));
    }
    table
}

/// The string npm's SDK signs: names, and a repeated name's distinct values, in JavaScript's
/// default sort order, by UTF-16 code units. That differs from our byte (code point) order
/// only where a character above U+FFFF (a surrogate pair, 0xD800..) meets one in
/// U+E000..=U+FFFF; TaskRouter's own names are ASCII.
fn npm_payload(url: &str, params: &[(String, String)]) -> String {
    let utf16 = |s: &str| s.encode_utf16().collect::<Vec<u16>>();
    let mut names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_by_key(|name| utf16(name));
    names.dedup();
    let mut payload = url.to_owned();
    for name in names {
        let mut values: Vec<&str> = params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        values.sort_by_key(|value| utf16(value));
        values.dedup();
        for value in values {
            payload.push_str(name);
            payload.push_str(value);
        }
    }
    payload
}

/// Port checks: the signature for each other form of the URL this service accepts (default
/// port added, or any port removed) must be accepted by the SDKs at the URL; and, between
/// the forms with and without the default port, the other way round too. (A URL signed with
/// a port other than the default is not accepted at the URL without it, by either.)
fn port_checks(case: &Case) -> Vec<(String, String)> {
    let variants = url_variants(&case.url);
    let symmetric = port(&case.url).is_none() || has_default_port(&case.url);
    variants[1..]
        .iter()
        .flat_map(|other| {
            let back =
                symmetric.then(|| (other.clone(), sign(&case.token, &case.url, &case.params)));
            back.into_iter()
                .chain([(case.url.clone(), sign(&case.token, other, &case.params))])
        })
        .collect()
}

fn case_line(case: &Case, checks: &[(String, String)]) -> String {
    json!({
        "token": case.token,
        "url": case.url,
        "params": case.params,
        "port_checks": checks
            .iter()
            .map(|(url, signature)| json!({"url": url, "signature": signature}))
            .collect::<Vec<_>>(),
    })
    .to_string()
}

#[derive(Debug, Deserialize)]
struct Answer {
    signature: String,
    port_checks: Vec<bool>,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs one SDK's script on the cases, one answer per case.
fn ask<A: serde::de::DeserializeOwned>(
    sdk: &str,
    program: &Path,
    script: &str,
    lines: &[String],
) -> Vec<A> {
    // One file per script and process: the tests run side by side.
    let stem = Path::new(script)
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or("cases");
    let cases = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{stem}-{sdk}-{}.jsonl", std::process::id()));
    std::fs::write(&cases, lines.join("\n") + "\n").expect("write the cases");
    let output = Command::new(program)
        .arg(root().join(script))
        .arg(&cases)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{sdk}: cannot run {}: {e}; {INSTALL_HINT}",
                program.display()
            )
        });
    let _ = std::fs::remove_file(&cases);
    assert!(
        output.status.success(),
        "{sdk}: {script} failed ({}); {INSTALL_HINT}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Vec<A> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{sdk}: {e} in {line:?}")))
        .collect();
    assert_eq!(answers.len(), lines.len(), "{sdk}: one answer per case");
    answers
}

fn python() -> PathBuf {
    let python = root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "Twilio's Python SDK is missing (no .venv/bin/python); {INSTALL_HINT}"
    );
    python
}

fn node() -> PathBuf {
    assert!(
        root()
            .join("tests/sdk/node_modules/twilio/package.json")
            .is_file(),
        "Twilio's npm SDK is missing (no tests/sdk/node_modules/twilio); {INSTALL_HINT}"
    );
    PathBuf::from("node")
}

/// A request that differs from the signed one in a way the signature covers.
struct Tampered {
    what: &'static str,
    token: String,
    url: String,
    params: Vec<(String, String)>,
    signature: String,
}

fn tampered(case: &Case, signature: &str) -> Vec<Tampered> {
    let variant =
        |what, token: &str, url: &str, params: &[(String, String)], signature: &str| Tampered {
            what,
            token: token.to_owned(),
            url: url.to_owned(),
            params: params.to_vec(),
            signature: signature.to_owned(),
        };
    let (token, url, params) = (case.token.as_str(), case.url.as_str(), &case.params[..]);
    let mut variants = Vec::new();

    if !params.is_empty() {
        let mut changed = params.to_vec();
        changed[case.param.index(params.len())]
            .1
            .push_str("<tampered>");
        variants.push(variant(
            "a parameter value changed",
            token,
            url,
            &changed,
            signature,
        ));
    }
    let mut added = params.to_vec();
    added.push(("Tampered".to_owned(), "1".to_owned()));
    variants.push(variant("a parameter added", token, url, &added, signature));
    // Every copy of one pair goes: a pair sent twice is signed once. A pair with an empty
    // name and value adds nothing to what is signed, so it cannot be the one removed.
    let removable: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, v)| !k.is_empty() || !v.is_empty())
        .collect();
    if !removable.is_empty() {
        let gone = removable[case.param.index(removable.len())].clone();
        let fewer: Vec<(String, String)> = params.iter().filter(|&p| *p != gone).cloned().collect();
        variants.push(variant(
            "a parameter removed",
            token,
            url,
            &fewer,
            signature,
        ));
    }

    let (before_query, query) = match url.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (url, None),
    };
    let with_query = |query: &str| format!("{before_query}?{query}");
    variants.push(variant(
        "the URL path changed",
        token,
        &format!(
            "{before_query}x{}",
            query.map(|q| format!("?{q}")).unwrap_or_default()
        ),
        params,
        signature,
    ));
    let changed_query = match query {
        Some(query) => with_query(&format!("{query}x")),
        None => with_query("x"),
    };
    variants.push(variant(
        "the query changed",
        token,
        &changed_query,
        params,
        signature,
    ));
    if let Some(query) = query {
        variants.push(variant(
            "the query dropped",
            token,
            before_query,
            params,
            signature,
        ));
        let reversed: Vec<&str> = query.split('&').rev().collect();
        let reversed = reversed.join("&");
        if reversed != query {
            variants.push(variant(
                "the query reordered",
                token,
                &with_query(&reversed),
                params,
                signature,
            ));
        }
    }
    let other_scheme = match url.strip_prefix("https://") {
        Some(rest) => format!("http://{rest}"),
        None => format!("https://{}", url.trim_start_matches("http://")),
    };
    variants.push(variant(
        "the scheme changed",
        token,
        &other_scheme,
        params,
        signature,
    ));

    let other_token = if case.other_token == token {
        format!("{}0", &token[1..])
    } else {
        case.other_token.clone()
    };
    variants.push(variant(
        "a different token",
        &other_token,
        url,
        params,
        signature,
    ));

    const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut flipped = signature.as_bytes().to_vec();
    let at = case.flip_at.index(flipped.len());
    let others: Vec<u8> = BASE64
        .iter()
        .copied()
        .filter(|&b| b != flipped[at])
        .collect();
    flipped[at] = others[case.flip_to.index(others.len())];
    let flipped = String::from_utf8(flipped).expect("base64 is ASCII");
    variants.push(variant(
        "one signature character flipped",
        token,
        url,
        params,
        &flipped,
    ));
    variants
}

/// Whether a tampered request still signs exactly what the original signed (then it is
/// not a tampering at all, and the generator is wrong).
fn signs_the_same(case: &Case, variant: &Tampered) -> bool {
    let original = signed_payload(&case.url, &case.params);
    variant.token == case.token
        && variant.signature == sign(&case.token, &case.url, &case.params)
        && url_variants(&variant.url)
            .iter()
            .any(|url| signed_payload(url, &variant.params) == original)
}

fn describe(i: usize, case: &Case) -> String {
    format!(
        "case {i}:\n    token  {}\n    url    {:?}\n    params {:?}",
        case.token, case.url, case.params
    )
}

#[test]
fn twilios_sdks_and_the_validator_agree() {
    let (python, node) = (python(), node());
    let cases = generate();

    let table = coverage(&cases);
    let thin: Vec<&(String, usize)> = table.iter().filter(|(_, n)| *n < 3).collect();
    assert!(thin.is_empty(), "the cases barely cover: {thin:?}");
    for (what, n) in &table {
        println!("{n:4} cases with {what}");
    }

    // npm's SDK is compared only where its UTF-16 order signs the same string as byte order.
    let npm_comparable: Vec<bool> = cases
        .iter()
        .map(|c| npm_payload(&c.url, &c.params) == signed_payload(&c.url, &c.params))
        .collect();
    let checks: Vec<Vec<(String, String)>> = cases.iter().map(port_checks).collect();
    let python_lines: Vec<String> = cases
        .iter()
        .zip(&checks)
        .map(|(case, checks)| case_line(case, checks))
        .collect();
    let npm_lines: Vec<String> = cases
        .iter()
        .zip(&checks)
        .zip(&npm_comparable)
        .map(|((case, checks), &comparable)| case_line(case, if comparable { checks } else { &[] }))
        .collect();
    let python_answers: Vec<Answer> = ask("python", &python, "tests/sdk/sign.py", &python_lines);
    let npm_answers: Vec<Answer> = ask("npm", &node, "tests/sdk/sign.mjs", &npm_lines);

    let mut failures: Vec<String> = Vec::new();
    let mut fail = |i: usize, case: &Case, what: String| {
        failures.push(format!("{what}\n  {}", describe(i, case)));
    };
    let mut tamperings = 0;
    for (i, case) in cases.iter().enumerate() {
        let ours = sign(&case.token, &case.url, &case.params);
        let python = &python_answers[i];
        let npm = &npm_answers[i];

        if python.signature != ours {
            fail(
                i,
                case,
                format!("Python signs {:?}, we sign {ours:?}", python.signature),
            );
        }
        if npm_comparable[i] {
            if npm.signature != ours {
                fail(
                    i,
                    case,
                    format!("npm signs {:?}, we sign {ours:?}", npm.signature),
                );
            }
        } else {
            // Excluded from the npm comparison; npm must still differ only in that order.
            let utf16_signed = sign(&case.token, &npm_payload(&case.url, &case.params), &[]);
            if npm.signature != utf16_signed {
                fail(
                    i,
                    case,
                    format!(
                        "npm signs {:?}, not {utf16_signed:?} (our signing in UTF-16 order)",
                        npm.signature
                    ),
                );
            }
        }

        for (sdk, signature) in [("Python", &python.signature), ("npm", &npm.signature)] {
            if sdk == "npm" && !npm_comparable[i] {
                continue;
            }
            if !is_valid(&[&case.token], &case.url, &case.params, signature) {
                fail(
                    i,
                    case,
                    format!("is_valid refuses {sdk}'s signature {signature:?}"),
                );
            }
            if !is_valid(
                &[&case.other_token, &case.token],
                &case.url,
                &case.params,
                signature,
            ) {
                fail(
                    i,
                    case,
                    format!("is_valid refuses {sdk}'s signature behind another token"),
                );
            }
        }

        let expected_checks = if npm_comparable[i] {
            checks[i].len()
        } else {
            0
        };
        for (sdk, answers, expected) in [
            ("Python", &python.port_checks, checks[i].len()),
            ("npm", &npm.port_checks, expected_checks),
        ] {
            if answers.len() != expected || answers.iter().any(|ok| !ok) {
                fail(
                    i,
                    case,
                    format!(
                        "{sdk}'s validate answers {answers:?} to the port checks {:?}",
                        checks[i]
                    ),
                );
            }
        }
        for (url, signature) in &checks[i] {
            if !is_valid(&[&case.token], url, &case.params, signature) {
                fail(
                    i,
                    case,
                    format!("is_valid refuses {signature:?} at {url:?} (port form)"),
                );
            }
        }

        for variant in tampered(case, &python.signature) {
            tamperings += 1;
            if signs_the_same(case, &variant) {
                fail(
                    i,
                    case,
                    format!("the generator's {:?} is no tampering", variant.what),
                );
            } else if is_valid(
                &[&variant.token],
                &variant.url,
                &variant.params,
                &variant.signature,
            ) {
                fail(
                    i,
                    case,
                    format!(
                        "is_valid accepts {}: token {}, url {:?}, params {:?}, signature {:?}",
                        variant.what, variant.token, variant.url, variant.params, variant.signature
                    ),
                );
            }
        }
    }

    let excluded = npm_comparable.iter().filter(|c| !**c).count();
    println!(
        "{} cases signed by Python's SDK and {} by npm's ({excluded} left out of npm's: UTF-16 \
         order); {tamperings} tampered variants refused",
        cases.len(),
        cases.len() - excluded,
    );
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// One JSON delivery (Event Streams) as the SDKs validate it: the URL with its
/// `bodySHA256`, the raw body, the signature.
#[derive(Debug, Clone)]
struct BodyCase {
    what: &'static str,
    token: String,
    url: String,
    body: String,
    signature: String,
}

#[derive(Debug, Deserialize)]
struct BodyAnswer {
    valid: bool,
}

/// The generated callbacks' tokens and URLs as JSON deliveries: the body is the parameters
/// as a JSON array (so it holds every kind of text the cases hold), its hash goes into the
/// URL, and the URL alone is signed. Each is sent as signed, and tampered: the body changed,
/// the hash of another body, another token, a signature character flipped, and signed at
/// the other form of the URL (default port added or removed), which the SDKs accept.
fn body_cases(cases: &[Case]) -> Vec<BodyCase> {
    let mut out = Vec::new();
    for case in cases {
        let body = json!([{"type": "com.twilio.taskrouter.task.updated", "data": {"payload": case.params}}])
            .to_string();
        let joiner = if case.url.contains('?') { '&' } else { '?' };
        let url = format!(
            "{}{joiner}bodySHA256={}",
            case.url,
            sha256_hex(body.as_bytes())
        );
        let signature = sign(&case.token, &url, &[]);
        let one = |what, token: &str, url: &str, body: &str, signature: &str| BodyCase {
            what,
            token: token.to_owned(),
            url: url.to_owned(),
            body: body.to_owned(),
            signature: signature.to_owned(),
        };
        out.push(one("as signed", &case.token, &url, &body, &signature));
        out.push(one(
            "the body changed",
            &case.token,
            &url,
            &format!("{body} "),
            &signature,
        ));
        let other_hash = format!("{}{joiner}bodySHA256={}", case.url, sha256_hex(b"[]"));
        out.push(one(
            "the hash of another body",
            &case.token,
            &other_hash,
            &body,
            &sign(&case.token, &other_hash, &[]),
        ));
        let other_token = format!("{}0", &case.token[1..]);
        out.push(one("another token", &other_token, &url, &body, &signature));
        let mut flipped = signature.clone().into_bytes();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("base64 is ASCII");
        out.push(one(
            "a signature character flipped",
            &case.token,
            &url,
            &body,
            &flipped,
        ));
        for other in url_variants(&url).into_iter().skip(1) {
            let symmetric = port(&case.url).is_none() || has_default_port(&case.url);
            if symmetric {
                let at_other = sign(&case.token, &other, &[]);
                out.push(one(
                    "signed at the other form",
                    &case.token,
                    &url,
                    &body,
                    &at_other,
                ));
            }
        }
    }
    out
}

#[test]
fn twilios_sdks_and_the_body_check_agree() {
    let (python, node) = (python(), node());
    let cases = body_cases(&generate());
    let lines: Vec<String> = cases
        .iter()
        .map(|c| {
            json!({"token": c.token, "url": c.url, "body": c.body, "signature": c.signature})
                .to_string()
        })
        .collect();
    let python_answers: Vec<BodyAnswer> =
        ask("python", &python, "tests/sdk/validate_body.py", &lines);
    let npm_answers: Vec<BodyAnswer> = ask("npm", &node, "tests/sdk/validate_body.mjs", &lines);
    let mut failures = Vec::new();
    let mut valid = 0;
    for (i, case) in cases.iter().enumerate() {
        let ours = check_with_body(
            &[&case.token],
            &case.url,
            case.body.as_bytes(),
            &case.signature,
        );
        valid += usize::from(ours == BodySignature::Valid);
        let expected = matches!(case.what, "as signed" | "signed at the other form");
        for (sdk, answer) in [("Python", &python_answers[i]), ("npm", &npm_answers[i])] {
            if answer.valid != (ours == BodySignature::Valid) || answer.valid != expected {
                failures.push(format!(
                    "{}: {sdk} says {}, we say {ours:?}\n  url {:?}",
                    case.what, answer.valid, case.url
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!(
        "{} deliveries, {valid} valid, every one judged alike by both SDKs",
        cases.len()
    );
    assert!(valid >= CASES, "{valid} valid deliveries");
}
