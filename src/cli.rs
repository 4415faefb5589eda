//! The command line: `serve`, `check`, `decide`. Lambda mode has no arguments.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use serde_json::json;

use crate::config::{Config, RulesLocation};
use crate::handler::{ROUTE, Signatures};
use crate::rules::{self, Rules, Task, is_queue_sid};
use crate::sources::{RulesSource, read_rules_file};
use crate::taskrouter;
use crate::wiring::{self, Face};

#[derive(Debug, Parser)]
#[command(
    name = "conditional-recording",
    version,
    about = "Decides whether TaskRouter records each Flex call"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve POST /assignment on a local HTTP server (rules from RULES_FILE, else the
    /// embedded example document)
    Serve {
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: SocketAddr,
    },
    /// Validate a rules document; exit 1 with the JSON path of the first fault
    Check { file: PathBuf },
    /// Print the decision for one task as JSON (a dry run of a rules document)
    Decide {
        /// The rules document to evaluate
        #[arg(long)]
        rules: PathBuf,
        /// TaskAttributes as JSON text, or @FILE to read them from a file
        #[arg(long)]
        attributes: String,
        /// The task's TaskQueue SID (WQ...)
        #[arg(long)]
        queue_sid: Option<String>,
        /// The task's queue friendly name, as the TaskRouter REST API would resolve it
        #[arg(long)]
        queue_name: Option<String>,
    },
}

/// A fault that ends a command, printed as one line on stderr.
type Fault = String;

pub fn serve(addr: SocketAddr, config: Config) -> Result<(), Fault> {
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let app = wiring::build(&config, Face::Serve).await?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        println!("conditional-recording serving POST http://{bound}{ROUTE}");
        println!("rules: {}", app.rules.describe());
        if config.rules == RulesLocation::Unset {
            println!("{}", rules::EXAMPLE_DOCUMENT.trim_end());
        }
        match &app.settings.signatures {
            Signatures::Off => {
                println!(
                    "signatures: NOT VALIDATED; any client can ask for decisions (local use only)"
                )
            }
            Signatures::Enforce { tokens, .. } => println!(
                "signatures: enforced (auth token from {})",
                tokens.describe()
            ),
        }
        crate::serve::serve(Arc::new(app), listener, shutdown_signal())
            .await
            .map_err(|e| format!("server failed: {e}"))
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

pub fn check(file: &Path) -> ExitCode {
    match load_rules(file) {
        Ok(rules) => {
            println!("{}: ok ({})", file.display(), rules.summary());
            ExitCode::SUCCESS
        }
        Err(fault) => {
            eprintln!("{fault}");
            ExitCode::FAILURE
        }
    }
}

pub fn decide(
    rules_file: &Path,
    attributes: &str,
    queue_sid: Option<&str>,
    queue_name: Option<&str>,
    config: &Config,
) -> Result<(), Fault> {
    let rules = load_rules(rules_file)?;
    if let Some(sid) = queue_sid.filter(|sid| !is_queue_sid(sid)) {
        return Err(format!(
            "--queue-sid {sid:?} is not a TaskQueue SID (WQ followed by 32 lowercase hex digits)"
        ));
    }
    let attributes_text = match attributes.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("{path}: cannot read: {e}"))?
        }
        None => attributes.to_owned(),
    };
    let decision = match taskrouter::parse_attributes(&attributes_text) {
        Some(attributes) => rules.decide(
            &Task {
                attributes: &attributes,
                queue_sid,
                queue_name,
            },
            config.fail_policy,
        ),
        None => rules::Decision::fail(config.fail_policy, rules::Reason::AttributesUnparseable),
    };
    let reason = decision.reason();
    let report = json!({
        "decision": decision.outcome(),
        "reason": reason.kind(),
        "rule": reason.rule().map(|r| r.to_string()),
        "explanation": reason.to_string(),
        "answer": taskrouter::answer(&decision, rules.instruction()),
    });
    println!("{report}");
    Ok(())
}

fn load_rules(file: &Path) -> Result<Rules, Fault> {
    let text = read_rules_file(file).map_err(|e| e.to_string())?;
    Rules::from_json(&text).map_err(|e| format!("{}: {e}", file.display()))
}
