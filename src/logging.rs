//! One JSON object per log line on stderr, so CloudWatch and tests can read fields.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber. `RUST_LOG` narrows or widens it (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
