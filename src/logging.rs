//! One JSON object per line on stderr, so CloudWatch and tests can read fields: the log
//! lines (through the subscriber) and the metric and decision lines (through [`write_line`])
//! alike.
//!
//! A thread can send its lines to a buffer instead ([`capture_on_this_thread`]): a test that
//! runs the service in its own process, on a runtime of its own, reads that runtime's lines
//! the way other tests read the binary's stderr.
//!
//! In Lambda mode each invocation is handled within [`in_invocation`]: every log line written
//! while it is handled ends with its `requestId`, as Lambda names it.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Where a thread's captured lines go.
pub type Captured = Arc<Mutex<Vec<u8>>>;

thread_local! {
    static CAPTURE: RefCell<Option<Captured>> = const { RefCell::new(None) };
}

tokio::task_local! {
    /// The request ID of the Lambda invocation being handled.
    static REQUEST_ID: String;
}

/// Installs the subscriber. `RUST_LOG` narrows or widens it; without it, in Lambda mode, the
/// level Lambda passes in `AWS_LAMBDA_LOG_LEVEL` (the template's `ApplicationLogLevel`);
/// otherwise `info`. Decision, enforcement and metric lines are written past the filter
/// ([`write_line`]): no level drops them.
pub fn init() {
    let var = |name| std::env::var(name).ok();
    let lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let (rust_log, lambda_level) = (var("RUST_LOG"), var("AWS_LAMBDA_LOG_LEVEL"));
    let directives = filter_directives(
        rust_log.as_deref(),
        lambda_level.as_deref().filter(|_| lambda),
    );
    let filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(Output)
        .try_init();
}

/// The filter's directives: `RUST_LOG` when set, else the level of `AWS_LAMBDA_LOG_LEVEL`
/// (Lambda's `FATAL` is `error`, the highest level here), else `info`.
fn filter_directives<'a>(rust_log: Option<&'a str>, lambda_level: Option<&str>) -> &'a str {
    if let Some(directives) = rust_log.filter(|d| !d.trim().is_empty()) {
        return directives;
    }
    match lambda_level.map(|level| level.trim().to_ascii_uppercase()) {
        Some(level) if level == "TRACE" => "trace",
        Some(level) if level == "DEBUG" => "debug",
        Some(level) if level == "WARN" => "warn",
        Some(level) if level == "ERROR" || level == "FATAL" => "error",
        _ => "info",
    }
}

/// Runs `handling` as the handling of the Lambda invocation `request_id`: the log lines written
/// meanwhile carry it as `requestId`, and so do metric lines ([`request_id`]).
pub async fn in_invocation<F: std::future::Future>(request_id: String, handling: F) -> F::Output {
    REQUEST_ID.scope(request_id, handling).await
}

/// The request ID of the Lambda invocation being handled by the calling task, if any.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(String::clone).ok()
}

/// From now on, every line this thread writes (log, metric, decision) goes to `buffer`, not
/// stderr.
pub fn capture_on_this_thread(buffer: Captured) {
    CAPTURE.with(|capture| *capture.borrow_mut() = Some(buffer));
}

/// Writes one whole line (ending in `\n`) in one write, so it is never interleaved with
/// another: to stderr, or to this thread's capture. The line is written as it is: a record
/// that belongs to an invocation names its `requestId` itself.
pub fn write_line(line: &[u8]) {
    let _ = target().write_all(line);
}

/// stderr, or the calling thread's capture.
fn target() -> Target {
    match CAPTURE.with(|capture| capture.borrow().clone()) {
        Some(buffer) => Target::Captured(buffer),
        None => Target::Stderr(std::io::stderr()),
    }
}

/// The subscriber's writer: each of its lines, with the invocation's `requestId` added.
struct Output;

impl<'a> MakeWriter<'a> for Output {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            target: target(),
            request_id: request_id(),
        }
    }
}

/// A writer for one line of the subscriber's.
struct Line {
    target: Target,
    request_id: Option<String>,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.write_all(bytes).map(|()| bytes.len())
    }

    /// The subscriber hands over each line whole, a JSON object and `\n`: the request ID
    /// goes in as its last field.
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let Some(request_id) = &self.request_id else {
            return self.target.write_all(bytes);
        };
        let Some(object) = bytes.strip_suffix(b"}\n") else {
            return self.target.write_all(bytes);
        };
        let mut line = Vec::with_capacity(bytes.len() + request_id.len() + 16);
        line.extend_from_slice(object);
        line.extend_from_slice(br#","requestId":"#);
        serde_json::to_writer(&mut line, request_id).map_err(std::io::Error::other)?;
        line.extend_from_slice(b"}\n");
        self.target.write_all(&line)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.target.flush()
    }
}

/// Where one line goes.
enum Target {
    Stderr(std::io::Stderr),
    Captured(Captured),
}

impl Write for Target {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            // One locked write: the subscriber and `write_line` hand over whole lines.
            Target::Stderr(stderr) => stderr.lock().write(bytes),
            Target::Captured(buffer) => {
                let mut buffer = buffer.lock().unwrap_or_else(PoisonError::into_inner);
                buffer.extend_from_slice(bytes);
                Ok(bytes.len())
            }
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Target::Stderr(stderr) => stderr.lock().write_all(bytes),
            Target::Captured(_) => self.write(bytes).map(drop),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Target::Stderr(stderr) => stderr.flush(),
            Target::Captured(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_captured_thread_writes_to_its_buffer_and_no_other_thread_does() {
        let buffer = Captured::default();
        let captured = Arc::clone(&buffer);
        std::thread::spawn(move || {
            capture_on_this_thread(captured);
            write_line(b"{\"message\":\"one\"}\n");
            write_line(b"{\"message\":\"two\"}\n");
        })
        .join()
        .unwrap();
        write_line(b"");
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "{\"message\":\"one\"}\n{\"message\":\"two\"}\n");
    }

    #[test]
    fn a_line_written_within_an_invocation_ends_with_its_request_id() {
        let buffer = Captured::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let within = runtime.block_on(in_invocation(
            "8476a536-e9f4-11e8-9739-2dfe598c3fcd".into(),
            async {
                let mut line = Output.make_writer();
                line.target = Target::Captured(Arc::clone(&buffer));
                line.write_all(b"{\"level\":\"WARN\",\"message\":\"callback rejected\"}\n")
                    .unwrap();
                request_id()
            },
        ));
        assert_eq!(
            within.as_deref(),
            Some("8476a536-e9f4-11e8-9739-2dfe598c3fcd")
        );
        assert_eq!(request_id(), None, "outside the invocation");
        let mut outside = Output.make_writer();
        outside.target = Target::Captured(Arc::clone(&buffer));
        outside.write_all(b"{\"message\":\"started\"}\n").unwrap();
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "{\"level\":\"WARN\",\"message\":\"callback rejected\",\"requestId\":\"8476a536-e9f4-11e8-9739-2dfe598c3fcd\"}\n\
             {\"message\":\"started\"}\n"
        );
    }

    #[test]
    fn rust_log_wins_then_lambdas_level_then_info() {
        assert_eq!(
            filter_directives(Some("debug,hyper=warn"), Some("ERROR")),
            "debug,hyper=warn"
        );
        assert_eq!(filter_directives(Some(" "), Some("ERROR")), "error");
        for (lambda, level) in [
            ("TRACE", "trace"),
            ("DEBUG", "debug"),
            ("INFO", "info"),
            ("WARN", "warn"),
            ("ERROR", "error"),
            ("FATAL", "error"),
            ("warn", "warn"),
            ("LOUD", "info"),
        ] {
            assert_eq!(filter_directives(None, Some(lambda)), level, "{lambda}");
        }
        assert_eq!(filter_directives(None, None), "info");
    }
}
