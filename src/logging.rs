//! One JSON object per line on stderr, so CloudWatch and tests can read fields: the log
//! lines (through the subscriber) and the metric and decision lines (through [`write_line`])
//! alike.
//!
//! A thread can send its lines to a buffer instead ([`capture_on_this_thread`]): a test that
//! runs the service in its own process, on a runtime of its own, reads that runtime's lines
//! the way other tests read the binary's stderr.

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

/// Installs the subscriber. `RUST_LOG` narrows or widens it (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(Output)
        .try_init();
}

/// From now on, every line this thread writes (log, metric, decision) goes to `buffer`, not
/// stderr.
pub fn capture_on_this_thread(buffer: Captured) {
    CAPTURE.with(|capture| *capture.borrow_mut() = Some(buffer));
}

/// Writes one whole line (ending in `\n`) in one write, so it is never interleaved with
/// another: to stderr, or to this thread's capture.
pub fn write_line(line: &[u8]) {
    let _ = Output.make_writer().write_all(line);
}

/// stderr, or the calling thread's capture.
struct Output;

impl<'a> MakeWriter<'a> for Output {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        match CAPTURE.with(|capture| capture.borrow().clone()) {
            Some(buffer) => Line::Captured(buffer),
            None => Line::Stderr(std::io::stderr()),
        }
    }
}

/// A writer for one line.
enum Line {
    Stderr(std::io::Stderr),
    Captured(Captured),
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            // One locked write: the subscriber and `write_line` hand over whole lines.
            Line::Stderr(stderr) => stderr.lock().write(bytes),
            Line::Captured(buffer) => {
                let mut buffer = buffer.lock().unwrap_or_else(PoisonError::into_inner);
                buffer.extend_from_slice(bytes);
                Ok(bytes.len())
            }
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Line::Stderr(stderr) => stderr.lock().write_all(bytes),
            Line::Captured(_) => self.write(bytes).map(drop),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Line::Stderr(stderr) => stderr.flush(),
            Line::Captured(_) => Ok(()),
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
}
