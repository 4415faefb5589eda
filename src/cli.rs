//! The command line: `serve`, `check`, `decide`, `publish`, and (in `proof`) `reconcile` and
//! `explain`. Lambda mode has no arguments.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use serde_json::json;

use crate::config::{AnswerMode, Config, ConfigError, RulesLocation};
use crate::handler::{MAX_BODY_BYTES, ROUTE};
use crate::publish::{self, Sample, Tier};
use crate::rules::{self, Rules, is_queue_sid};
use crate::service::{Signatures, TokenSource};
use crate::sources::publishing::{self, InForce};
use crate::sources::{RulesSource, read_rules_file, shown};
use crate::taskrouter::{self, AssignmentCallback, NoInstruction};
use crate::wiring::{self, Face, StartError};
use lambda_http::request::LambdaRequest;

/// The version and the commit built from (`unknown` outside a git checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CONDITIONAL_RECORDING_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "conditional-recording",
    version = VERSION,
    about = "Decides whether TaskRouter records each Flex call"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve POST /assignment on a local HTTP server (rules from RULES_PARAMETER in SSM or
    /// RULES_FILE, else the embedded example document)
    Serve {
        /// HOST:PORT to listen on; HOST may be a name (localhost:3000), PORT 0 for any
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: String,
    },
    /// Validate a rules document (- for standard input); exit 1 with the JSON path of the
    /// first fault
    Check { file: PathBuf },
    /// Print the decision for one task as JSON (a dry run of a rules document)
    Decide(DecideArgs),
    /// Validate a rules document and write it to its SSM parameter as a new version
    Publish(PublishArgs),
    /// Account for every recording of a period against the ledger's first decisions; exit 0
    /// clean, 1 violations remain, 3 incomplete, 2 usage
    Reconcile(crate::proof::ReconcileArgs),
    /// Print the ledger's account of one call (by WT, CA, CF or RE SID); exit 1 when unknown
    Explain(crate::proof::ExplainArgs),
}

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The rules document, written byte for byte
    pub file: PathBuf,
    /// The SSM parameter's name, such as /conditional-recording/rules
    #[arg(long)]
    pub parameter: String,
    /// Standard (up to 4096 bytes) or Advanced (up to 8192); by default the parameter's
    /// current tier, Standard for a new one
    #[arg(long, value_parser = parse_tier)]
    pub tier: Option<Tier>,
    /// Check and compare against the version in force, write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// A directory of sample tasks (*.json): list those this document decides differently
    /// from the version in force
    #[arg(long, value_name = "DIR")]
    pub samples: Option<PathBuf>,
    /// text for people, json (one object on stdout) for scripts
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

fn parse_tier(text: &str) -> Result<Tier, String> {
    Tier::parse(text).ok_or_else(|| "Standard or Advanced".to_owned())
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("task").required(true).args(["attributes", "callback", "event"])))]
pub struct DecideArgs {
    /// The rules document to evaluate
    #[arg(long)]
    pub rules: PathBuf,
    /// TaskAttributes as JSON text, or @FILE to read them from a file (@- for standard input)
    #[arg(long)]
    pub attributes: Option<String>,
    /// A form-encoded assignment-callback body, as TaskRouter posts it
    #[arg(long, value_name = "FILE")]
    pub callback: Option<PathBuf>,
    /// An API Gateway event (REST or HTTP API) carrying an assignment callback
    #[arg(long, value_name = "FILE")]
    pub event: Option<PathBuf>,
    /// The task's TaskQueue SID (WQ...); overrides the callback's
    #[arg(long)]
    pub queue_sid: Option<String>,
    /// The task's queue friendly name, as the TaskRouter REST API would resolve it
    #[arg(long)]
    pub queue_name: Option<String>,
    /// The task channel's unique name (voice, chat, sms, ...), as TaskChannelUniqueName;
    /// overrides the callback's
    #[arg(long)]
    pub channel: Option<String>,
}

/// A fault that ends a command (or Lambda mode), printed as one line on stderr.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Server(std::io::Error),
    #[error("Lambda runtime stopped: {0}")]
    Lambda(lambda_http::Error),
    /// What `decide` cannot do, said at the edge, with the file it concerns.
    #[error("{0}")]
    DryRun(String),
    /// Why `publish` wrote nothing (or, for a concurrent publish, what it overwrote).
    #[error("{0}")]
    Publish(String),
}

impl From<publishing::PublishError> for Fault {
    fn from(error: publishing::PublishError) -> Fault {
        Fault::Publish(error.to_string())
    }
}

pub fn serve(addr: &str, config: Config) -> Result<(), Fault> {
    let runtime = tokio::runtime::Runtime::new().map_err(Fault::Runtime)?;
    runtime.block_on(async move {
        let app = wiring::build(&config, Face::Serve).await?;
        let listen = |source| Fault::Listen {
            addr: addr.to_owned(),
            source,
        };
        let listener = tokio::net::TcpListener::bind(listen_address(addr).await.map_err(listen)?)
            .await
            .map_err(listen)?;
        let bound = listener.local_addr().map_err(listen)?;
        wiring::log_started(&app);
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
            .map_err(Fault::Server)
    })
}

/// The address `--addr` names: an IP address and port as given, or a host name's first IPv4
/// address (so `localhost:3000` answers `curl http://127.0.0.1:3000` as well as
/// `curl http://localhost:3000`), else its first address.
async fn listen_address(addr: &str) -> std::io::Result<SocketAddr> {
    if let Ok(addr) = addr.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(addr).await?.collect();
    resolved
        .iter()
        .find(|a| a.is_ipv4())
        .or(resolved.first())
        .copied()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))
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
    let checked = read_rules_file(file)
        .map_err(|e| e.to_string())
        .and_then(|text| {
            let (rules, warnings) =
                Rules::check(&text).map_err(|e| format!("{}: {e}", shown(file)))?;
            Ok((rules, warnings, text.len()))
        });
    match checked {
        Ok((rules, warnings, bytes)) => {
            println!("{}: ok ({})", shown(file), rules.summary());
            for warning in warnings {
                eprintln!("{}: warning: {warning}", shown(file));
            }
            if let Some(warning) = publish::size_warning(bytes) {
                eprintln!("{}: warning: {warning}", shown(file));
            }
            ExitCode::SUCCESS
        }
        Err(fault) => {
            eprintln!("{fault}");
            ExitCode::FAILURE
        }
    }
}

/// The task `decide` looks at: from `--attributes`, `--callback` or `--event`.
struct DryRunTask {
    task_sid: Option<String>,
    attributes: String,
    queue_sid: Option<String>,
    channel: Option<String>,
}

pub fn decide(args: &DecideArgs, config: &Config) -> Result<(), Fault> {
    let rules = load_rules(&args.rules)?;
    let task = dry_run_task(args)?;
    let queue_sid = args.queue_sid.clone().or(task.queue_sid);
    if let Some(sid) = queue_sid.as_deref().filter(|sid| !is_queue_sid(sid)) {
        return Err(Fault::DryRun(format!(
            "queue SID {sid:?} is not a TaskQueue SID (WQ followed by 32 lowercase hex digits)"
        )));
    }
    let parsed = taskrouter::parse_attributes(&task.attributes);
    if parsed.is_none() {
        // What the service cannot read, it leaves to the fail policy; a dry run also says why.
        let why = match serde_json::from_str::<serde_json::Value>(&task.attributes) {
            Err(e) => e.to_string(),
            Ok(_) => "not a JSON object".to_owned(),
        };
        eprintln!(
            "conditional-recording: the TaskAttributes cannot be read ({why}); the service answers such a task with ON_RULES_UNAVAILABLE"
        );
    }
    let channel = args.channel.clone().or(task.channel);
    let arrival = rules::Arrival {
        attributes: parsed.as_ref(),
        queue_sid: queue_sid.as_deref(),
        queue_name: args.queue_name.as_deref(),
        channel: channel.as_deref(),
    };
    let decision = rules::decide_arrival(Some(&rules), arrival, config.fail_policy);
    let reason = decision.reason();
    let answer =
        crate::handler::answer_in(config.mode, &decision, parsed.as_ref(), rules.instruction());
    let mut report = json!({
        "decision": decision.outcome(),
        "reason": reason.kind(),
        "rule": reason.rule().map(|r| r.to_string()),
        "explanation": reason.to_string(),
        "answer": answer,
        "answer_reason": answer.no_instruction().map(NoInstruction::as_str),
    });
    if config.mode == AnswerMode::Annotate
        && let rules::Decision::Conference { record, .. } = decision
    {
        report["annotation"] = match parsed.as_ref().and_then(taskrouter::stamped_record) {
            // An earlier reservation's stamp is the call's first decision, and stays.
            Some(first) => json!({"kept": {"record": first}}),
            None => json!({"record": record, "reason": reason.to_string()}),
        };
    }
    if let Some(task_sid) = task.task_sid {
        report["task_sid"] = json!(task_sid);
    }
    println!("{report}");
    Ok(())
}

/// An API Gateway event is at most Lambda's 6 MB payload; a little more is allowed here.
const MAX_EVENT_BYTES: u64 = 8 << 20;

/// The file's bytes, refused past `limit` (a callback the service would refuse with 413, or
/// something that is no callback at all) without reading more than that.
fn read_at_most(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, Fault> {
    crate::sources::read_at_most(path, limit)
        .map_err(|e| Fault::DryRun(format!("{}: cannot read: {e}", shown(path))))?
        .ok_or_else(|| Fault::DryRun(format!("{}: over {limit} bytes; {what}", shown(path))))
}

fn dry_run_task(args: &DecideArgs) -> Result<DryRunTask, Fault> {
    let max_body = MAX_BODY_BYTES as u64;
    let too_large = "the service answers a callback body over 256 KiB with 413";
    let body = match (&args.attributes, &args.callback, &args.event) {
        (Some(attributes), _, _) => {
            let attributes = match attributes.strip_prefix('@') {
                Some(path) => String::from_utf8_lossy(&read_at_most(
                    Path::new(path),
                    max_body,
                    "TaskAttributes come in a callback body of at most 256 KiB",
                )?)
                .into_owned(),
                None => attributes.clone(),
            };
            return Ok(DryRunTask {
                task_sid: None,
                attributes,
                queue_sid: None,
                channel: None,
            });
        }
        (None, Some(callback), _) => read_at_most(callback, max_body, too_large)?,
        (None, None, Some(event)) => {
            let text = read_at_most(event, MAX_EVENT_BYTES, "Lambda events are at most 6 MB")?;
            let payload: LambdaRequest = serde_json::from_slice(&text).map_err(|e| {
                Fault::DryRun(format!(
                    "{}: not an API Gateway REST or HTTP API event: {e}",
                    shown(event)
                ))
            })?;
            let request = crate::lambda::into_request(payload);
            // What the service would refuse before deciding, refused here too, by the same
            // checks.
            let params = crate::handler::form_parameters(&request).map_err(|rejection| {
                Fault::DryRun(format!(
                    "{}: the service answers {} ({rejection})",
                    shown(event),
                    rejection.status().as_u16()
                ))
            })?;
            return dry_run_callback(params);
        }
        (None, None, None) => {
            return Err(Fault::DryRun(
                "give --attributes, --callback or --event".into(),
            ));
        }
    };
    let params = taskrouter::parse_form(&body)
        .map_err(|e| Fault::DryRun(format!("not an assignment callback: {e}")))?;
    dry_run_callback(params)
}

fn dry_run_callback(params: Vec<(String, String)>) -> Result<DryRunTask, Fault> {
    let callback = AssignmentCallback::from_params(params)
        .map_err(|e| Fault::DryRun(format!("not an assignment callback: {e}")))?;
    Ok(DryRunTask {
        task_sid: Some(callback.task_sid),
        attributes: callback.task_attributes,
        queue_sid: callback.task_queue_sid,
        channel: callback.task_channel,
    })
}

fn load_rules(file: &Path) -> Result<Rules, Fault> {
    let text = read_rules_file(file).map_err(|e| Fault::DryRun(e.to_string()))?;
    Rules::from_json(&text).map_err(|e| Fault::DryRun(format!("{}: {e}", shown(file))))
}

/// `publish`: check the document as `check` does, fit it to a tier, compare it with the
/// version in force on the samples, then write it unless this is a dry run.
pub fn publish(args: &PublishArgs, config: &Config) -> Result<(), Fault> {
    let file = shown(&args.file);
    let name = args.parameter.as_str();
    if name.trim().is_empty() || name.contains(':') {
        return Err(Fault::Publish(format!(
            "--parameter takes a parameter's name (not an ARN, nor a name with a :version or :label): {name:?}"
        )));
    }
    let text = read_rules_file(&args.file).map_err(|e| Fault::Publish(e.to_string()))?;
    let (rules, warnings) =
        Rules::check(&text).map_err(|e| Fault::Publish(format!("{file}: {e}")))?;
    for warning in warnings {
        eprintln!("{file}: warning: {warning}");
    }
    let bytes = text.len();
    let too_large = |e: publish::TierError| Fault::Publish(format!("{file}: {e}"));
    // What the asked tier, or every tier, cannot hold is refused before SSM is asked.
    if args.tier.is_some() || Tier::smallest_for(bytes).is_none() {
        publish::choose_tier(bytes, args.tier, None).map_err(too_large)?;
    }
    let samples = args.samples.as_deref().map(read_samples).transpose()?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Fault::Runtime)?;
    runtime.block_on(async {
        let client = publishing::admin_client()
            .await
            .map_err(|e| Fault::Publish(e.to_string()))?;
        let in_force = publishing::read(&client, name, samples.is_some()).await?;
        let tier = publish::choose_tier(bytes, args.tier, in_force.as_ref().map(|p| p.tier))
            .map_err(too_large)?;
        let old_rules = in_force.as_ref().and_then(|p| in_force_rules(name, p));
        let changes = samples.as_deref().map(|samples| {
            publish::changes(samples, old_rules.as_ref(), &rules, config.fail_policy)
        });
        let report = PublishReport {
            args,
            summary: rules.summary(),
            in_force: in_force.as_ref(),
            tier,
            bytes,
            samples: samples.as_deref(),
            changes: changes.as_deref(),
        };
        if args.format == Format::Text {
            report.print_preview();
        }
        let version = if args.dry_run {
            None
        } else {
            Some(publishing::write(&client, name, &text, tier, in_force.as_ref()).await?)
        };
        match args.format {
            Format::Text => match version {
                Some(version) => println!("published {name} version {version}"),
                None => println!("dry run: nothing written"),
            },
            Format::Json => println!("{}", report.json(version)),
        }
        Ok(())
    })
}

/// The document in force, when it is valid; a rejected one is said once, and the samples
/// are compared as the service decides without rules.
fn in_force_rules(name: &str, in_force: &InForce) -> Option<Rules> {
    let text = in_force.text.as_deref()?;
    Rules::from_json(text)
        .inspect_err(|e| {
            eprintln!(
                "conditional-recording: version {} of {name} is rejected ({e}); the samples are compared with no rules in force",
                in_force.version
            )
        })
        .ok()
}

/// The sample tasks of a directory: its `*.json` files, by name. A file that cannot be read
/// is an error naming it; its content is never quoted (caller data).
fn read_samples(dir: &Path) -> Result<Vec<Sample>, Fault> {
    let unreadable = |path: &Path, e: std::io::Error| {
        Fault::Publish(format!("{}: cannot read: {e}", shown(path)))
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| unreadable(dir, e))? {
        let path = entry.map_err(|e| unreadable(dir, e))?.path();
        if path.extension().is_some_and(|ext| ext == "json") {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(Fault::Publish(format!(
            "{}: no sample files (*.json) in it",
            dir.display()
        )));
    }
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let bytes = crate::sources::read_at_most(path, MAX_BODY_BYTES as u64)
                .map_err(|e| unreadable(path, e))?
                .ok_or_else(|| {
                    Fault::Publish(format!(
                        "{}: over {MAX_BODY_BYTES} bytes; TaskAttributes come in a callback body of at most 256 KiB",
                        path.display()
                    ))
                })?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| publish::SampleError::NotText)
                .and_then(|text| Sample::parse(name, text));
            text.map_err(|e| Fault::Publish(format!("{}: {e}", path.display())))
        })
        .collect()
}

/// What `publish` found and decided, for people or for scripts.
struct PublishReport<'a> {
    args: &'a PublishArgs,
    summary: String,
    in_force: Option<&'a InForce>,
    tier: Tier,
    bytes: usize,
    samples: Option<&'a [Sample]>,
    changes: Option<&'a [publish::Change<'a>]>,
}

impl PublishReport<'_> {
    fn print_preview(&self) {
        let file = shown(&self.args.file);
        let name = &self.args.parameter;
        println!("{file}: ok ({})", self.summary);
        match self.in_force {
            Some(p) => println!(
                "{name}: version {} in force ({}, {} tier)",
                p.version,
                p.kind.as_str(),
                p.tier
            ),
            None => println!("{name}: does not exist yet; it will be a String parameter"),
        }
        println!(
            "{file}: {} bytes, written at the {} tier (up to {} bytes)",
            self.bytes,
            self.tier,
            self.tier.limit()
        );
        if let (Some(samples), Some(changes)) = (self.samples, self.changes) {
            for change in changes {
                println!("{change}");
            }
            println!(
                "{} of {} samples decided differently",
                changes.len(),
                samples.len()
            );
        }
    }

    fn json(&self, version: Option<i64>) -> serde_json::Value {
        let decision = |d: &rules::Decision| {
            let reason = d.reason();
            json!({
                "decision": d.outcome(),
                "reason": reason.kind(),
                "rule": reason.rule().map(|r| r.to_string()),
            })
        };
        json!({
            "parameter": self.args.parameter,
            "file": shown(&self.args.file).to_string(),
            "bytes": self.bytes,
            "tier": self.tier.as_str(),
            "type": self.in_force.map_or("String", |p| p.kind.as_str()),
            "previous_version": self.in_force.map(|p| p.version),
            "version": version,
            "dry_run": self.args.dry_run,
            "samples": self.samples.map(<[Sample]>::len),
            "changes": self.changes.map(|changes| changes.iter().map(|c| json!({
                "sample": c.sample,
                "old": decision(&c.old),
                "new": decision(&c.new),
            })).collect::<Vec<_>>()),
        })
    }
}
