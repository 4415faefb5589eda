//! The compliance officer's commands (SPEC section 10): `reconcile`, which accounts for every
//! recording of a period, and `explain`, which prints the ledger's account of one call. A
//! face: options in, the use case on the real adapters, the report out on stdout, exit
//! statuses as the SPEC gives them (0 clean, 1 violations remain, 3 incomplete, 2 usage).

use std::process::ExitCode;
use std::time::Instant;

use serde_json::{Value, json};

use crate::config::Config;
use crate::lambda::SweepFailed;
use crate::ledger::{self, CallAccount};
use crate::metrics;
use crate::ports::Ledger;
use crate::reconcile::{Report, Window};
use crate::sid::is_sid;
use crate::wiring;

/// `reconcile`'s options.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("window").required(true).args(["since", "from"])))]
pub struct ReconcileArgs {
    /// The window up to now: 90m, 24h, 7d
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// The window's start: RFC 3339 (2026-12-01T09:00:00Z) or a date (2026-12-01, its 00:00 UTC)
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// The window's end, excluded (default: now)
    #[arg(long, value_name = "TIME", requires = "from")]
    pub to: Option<String>,
    /// Delete the recordings that should not exist (violations), stopping in-progress ones
    /// of do-not-record calls first; every action is written to the ledger
    #[arg(long)]
    pub fix: bool,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    Csv,
}

/// `explain`'s options.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// A TaskSid (WT...), call (CA...), conference (CF...) or recording (RE...)
    pub sid: String,
    #[arg(long, value_enum, default_value_t = crate::cli::Format::Text)]
    pub format: crate::cli::Format,
}

/// Exit status of a usage or configuration fault.
const USAGE: u8 = 2;
/// Exit status of a run that could not check everything.
const INCOMPLETE: u8 = 3;

fn usage(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("conditional-recording: {message}");
    ExitCode::from(USAGE)
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("conditional-recording: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

/// Runs `reconcile`: the report on stdout, one `reconcile` line (and its metrics) on stderr.
pub fn reconcile(args: &ReconcileArgs, config: &Config) -> ExitCode {
    let window = match Window::from_options(
        args.since.as_deref(),
        args.from.as_deref(),
        args.to.as_deref(),
        ledger::unix_now(),
    ) {
        Ok(window) => window,
        Err(error) => return usage(error),
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let sweeper = match wiring::sweeper(config, args.fix).await {
            Ok(sweeper) => sweeper,
            Err(error) => return usage(error),
        };
        let started = Instant::now();
        let report = sweeper.run(window).await;
        metrics::reconciled(&report, args.fix, started.elapsed().as_millis() as u64);
        print!("{}", render(&report, args.format));
        ExitCode::from(report.verdict() as u8)
    })
}

/// One scheduled sweep (Lambda): `reconcile --since SINCE [--fix]`, its `reconcile` line and
/// metrics written, its counts answered. A sweep that cannot run at all is the invocation's
/// error (the function's `Errors` metric); one that ran but could not check everything says
/// so in `IncompleteSweeps`.
pub async fn sweep(since: &str, fix: bool, config: &Config) -> Result<Value, SweepFailed> {
    let window = Window::from_options(Some(since), None, None, ledger::unix_now())
        .map_err(|e| SweepFailed(e.to_string()))?;
    let sweeper = wiring::sweeper(config, fix)
        .await
        .map_err(|e| SweepFailed(e.to_string()))?;
    let started = Instant::now();
    let report = sweeper.run(window).await;
    metrics::reconciled(&report, fix, started.elapsed().as_millis() as u64);
    let mut summary = report.to_json();
    if let Some(summary) = summary.as_object_mut() {
        summary.remove("rows");
    }
    Ok(summary)
}

/// The report in the chosen format.
pub fn render(report: &Report, format: ReportFormat) -> String {
    match format {
        ReportFormat::Text => report.to_text(),
        ReportFormat::Json => format!("{}\n", report.to_json()),
        ReportFormat::Csv => report.to_csv(),
    }
}

/// Runs `explain`: exit 1 when the ledger has no such call, 3 when it cannot be read.
pub fn explain(args: &ExplainArgs, config: &Config) -> ExitCode {
    if !["WT", "CA", "CF", "RE"]
        .iter()
        .any(|kind| is_sid(&args.sid, kind))
    {
        return usage(
            "explain takes a TaskSid (WT...), call (CA...), conference (CF...) or recording (RE...): two letters and 32 lowercase hex digits",
        );
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let ledger = match wiring::ledger(config).await {
            Ok(ledger) => ledger,
            Err(error) => return usage(error),
        };
        match ledger.account(&args.sid).await {
            Ok(Some(account)) => {
                match args.format {
                    crate::cli::Format::Json => println!("{}", account_json(&account)),
                    crate::cli::Format::Text => print!("{}", account_text(&account)),
                }
                ExitCode::SUCCESS
            }
            Ok(None) => {
                eprintln!(
                    "conditional-recording: the ledger has no call for {}",
                    args.sid
                );
                ExitCode::FAILURE
            }
            Err(cause) => {
                eprintln!("conditional-recording: the ledger could not be read: {cause}");
                ExitCode::from(INCOMPLETE)
            }
        }
    })
}

/// The ledger's account of a call as one JSON value.
pub fn account_json(account: &CallAccount) -> Value {
    let first = account.first.as_ref().map(|first| {
        json!({
            "decision": ledger::outcome_word(first.record),
            "record": first.record,
            "reason": first.reason,
            "rule": first.rule,
            "rules_version": first.rules_version,
            "decided_at": ledger::rfc3339(first.decided_at),
            "decided_by": first.decided_by.as_str(),
        })
    });
    json!({
        "task_sid": account.task_sid,
        "first": first,
        "call_sid": account.call_sid,
        "conference_sid": account.conference_sid,
        "actions": account.actions.iter().map(|a| json!({
            "recording_sid": a.recording_sid,
            "action": a.action,
            "at": ledger::rfc3339(a.at),
            "by": a.by.as_str(),
            "cause": a.cause,
        })).collect::<Vec<_>>(),
    })
}

/// The ledger's account of a call, for people.
pub fn account_text(account: &CallAccount) -> String {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut out = format!("call {}\n", account.task_sid);
    match &account.first {
        Some(first) => {
            out.push_str(&format!(
                "  first decision: {} ({}), rule {}, rules version {}\n  decided {} by the {}\n",
                ledger::outcome_word(first.record),
                first.reason,
                or_dash(&first.rule),
                first
                    .rules_version
                    .map_or_else(|| "-".to_owned(), |v| v.to_string()),
                ledger::rfc3339(first.decided_at),
                match first.decided_by {
                    ledger::DecidedBy::Assignment => "assignment callback",
                    ledger::DecidedBy::Event => "first enforcement event",
                    ledger::DecidedBy::Stamp => "task's stamp",
                },
            ));
        }
        None => out.push_str("  first decision: none in the ledger\n"),
    }
    out.push_str(&format!(
        "  call {}, conference {}\n",
        or_dash(&account.call_sid),
        or_dash(&account.conference_sid)
    ));
    if account.actions.is_empty() {
        out.push_str("  no action on its recordings\n");
    }
    for action in &account.actions {
        out.push_str(&format!(
            "  {} {} {} by {}{}\n",
            ledger::rfc3339(action.at),
            action.action,
            action.recording_sid,
            action.by.as_str(),
            action
                .cause
                .as_ref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default(),
        ));
    }
    out
}
