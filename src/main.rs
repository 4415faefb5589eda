use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use conditional_recording::cli::{self, Cli, Command, Fault};
use conditional_recording::config::Config;
use conditional_recording::wiring::{self, Face};
use conditional_recording::{lambda, logging, proof};

fn main() -> ExitCode {
    logging::init();
    // `check` and `--help` read no configuration, so a bad variable meant for the service
    // does not fail them; the service's faces read all of it, and stop on any fault.
    let config = || Config::from_process_env().map_err(Fault::from);
    let result = if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        config().and_then(run_lambda)
    } else {
        match Cli::parse().command {
            Command::Serve { addr } => config().and_then(|config| cli::serve(&addr, config)),
            Command::Check { file } => return cli::check(&file),
            Command::Decide(args) => config().and_then(|config| cli::decide(&args, &config)),
            Command::Publish(args) => config().and_then(|config| cli::publish(&args, &config)),
            Command::Reconcile(args) => {
                return match config() {
                    Ok(config) => proof::reconcile(&args, &config),
                    Err(fault) => usage(&fault),
                };
            }
            Command::Explain(args) => {
                return match config() {
                    Ok(config) => proof::explain(&args, &config),
                    Err(fault) => usage(&fault),
                };
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(fault) => fail(&fault),
    }
}

fn run_lambda(config: Config) -> Result<(), Fault> {
    // Lambda hands a process one invocation at a time, so worker threads buy nothing; one
    // thread measured 0.5 ms quicker to ready and 0.6 MiB smaller (BENCHMARKS.md).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Fault::Runtime)?;
    runtime.block_on(async move {
        let app = wiring::build(&config, Face::Lambda).await?;
        wiring::log_started(&app);
        let config = Arc::new(config);
        // The sweep's clients are made per run (every 15 minutes), so the callback's start
        // pays nothing for them.
        let sweep = move |event: lambda::SweepEvent| {
            let config = Arc::clone(&config);
            async move { proof::sweep(&event.reconcile.since, event.reconcile.fix, &config).await }
        };
        lambda::run(Arc::new(app), sweep)
            .await
            .map_err(Fault::Lambda)
    })
}

/// A configuration fault of `reconcile` or `explain`: exit 2, as their usage errors.
fn usage(fault: &Fault) -> ExitCode {
    eprintln!("conditional-recording: {fault}");
    ExitCode::from(2)
}

fn fail(fault: &Fault) -> ExitCode {
    eprintln!("conditional-recording: {fault}");
    ExitCode::FAILURE
}
