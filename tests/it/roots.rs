//! The root certificates both outbound clients (SSM, TaskRouter's REST API) trust: the set
//! built in, or the system's way when SSL_CERT_FILE or SSL_CERT_DIR name others. Roots that
//! are named but cannot be read stop the start with one line naming the variable, as does an
//! SSM endpoint variable that is set but empty.

use crate::support;
use crate::support::Http;
use crate::support::{RULES_PARAMETER, TOKEN};

use std::path::PathBuf;

use support::{Callback, INBOUND, Server, TempDir, command};

/// A self-signed root made for these tests (its key was thrown away).
fn test_root() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls/test-root.pem");
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// `serve` with an auth token builds the TaskRouter client, so it reads the roots.
fn serves_with(env: &[(&str, &str)]) {
    let mut all = vec![("TWILIO_AUTH_TOKEN", TOKEN)];
    all.extend_from_slice(env);
    let server = Server::start_with(&all);
    let callback = Callback::new(INBOUND);
    let answer = server.send(&callback.signed(TOKEN, &server.url));
    assert_eq!(
        answer.expect_json(200)["conference_record"],
        "record-from-start",
        "{env:?}"
    );
    server.stop();
}

#[test]
fn roots_named_by_ssl_cert_file_or_ssl_cert_dir_are_read() {
    let root = test_root();
    serves_with(&[("SSL_CERT_FILE", &root)]);

    let dir = TempDir::new();
    let pem = std::fs::read_to_string(&root).expect("the test root");
    dir.write("test-root.pem", &pem);
    let dir_path = dir.path.to_str().expect("a UTF-8 temp path");
    serves_with(&[("SSL_CERT_DIR", dir_path)]);
}

#[test]
fn roots_that_cannot_be_read_stop_the_start_in_both_modes() {
    let dir = TempDir::new();
    let garbage = dir.write("garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64\n");
    let garbage = garbage.to_str().expect("a UTF-8 temp path").to_owned();
    let empty = TempDir::new();
    empty.write("README", "no certificates here");
    let empty_dir = empty.path.to_str().expect("a UTF-8 temp path").to_owned();
    let cases = [
        ("SSL_CERT_FILE", "/nonexistent/roots.pem".to_owned()),
        ("SSL_CERT_FILE", garbage),
        ("SSL_CERT_DIR", empty_dir),
    ];
    let serve: &[(&str, &str)] = &[("TWILIO_AUTH_TOKEN", TOKEN)];
    // Lambda mode with rules in SSM builds the SSM client first; nothing is read.
    let lambda: &[(&str, &str)] = &[
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9"),
        ("RULES_PARAMETER", RULES_PARAMETER),
        ("TWILIO_AUTH_TOKEN", TOKEN),
    ];
    for (variable, value) in &cases {
        for (mode, base) in [("serve", serve), ("lambda", lambda)] {
            let mut env = base.to_vec();
            env.push((variable, value));
            let mut command = command(&env);
            if mode == "serve" {
                command.args(["serve", "--addr", "127.0.0.1:0"]);
            }
            let output = command.output().expect("run the binary");
            let stderr = String::from_utf8_lossy(&output.stderr);
            let what = format!("{mode}, {variable}={value}: {stderr}");
            assert_eq!(output.status.code(), Some(1), "{what}");
            assert!(!stderr.contains("panicked"), "{what}");
            let last = stderr.lines().last().unwrap_or_default();
            assert!(
                last.contains("SSL_CERT_FILE or SSL_CERT_DIR"),
                "one last line names the variables: {what}"
            );
        }
    }
}

#[test]
fn an_empty_aws_endpoint_variable_stops_the_start_with_its_name_not_a_panic() {
    for name in ["AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL"] {
        for value in ["", "  "] {
            let env = [
                ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9"),
                ("RULES_PARAMETER", RULES_PARAMETER),
                ("TWILIO_AUTH_TOKEN", TOKEN),
                (name, value),
            ];
            let output = command(&env).output().expect("run the binary");
            let stderr = String::from_utf8_lossy(&output.stderr);
            let what = format!("{name}={value:?}: {stderr}");
            // An empty AWS_ENDPOINT_URL_SSM made the SDK panic while it was configured.
            assert_eq!(output.status.code(), Some(1), "{what}");
            assert!(!stderr.contains("panicked"), "{what}");
            let last = stderr.lines().last().unwrap_or_default();
            assert!(last.contains(&format!("{name} is set but empty")), "{what}");
        }
    }
}
