use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use conditional_recording::cli::{self, Cli, Command};
use conditional_recording::config::Config;
use conditional_recording::wiring::{self, Face};
use conditional_recording::{lambda, logging};

fn main() -> ExitCode {
    logging::init();
    let config = match Config::from_process_env() {
        Ok(config) => config,
        Err(fault) => return fail(&fault.to_string()),
    };
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return match run_lambda(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(fault) => fail(&fault),
        };
    }
    let result = match Cli::parse().command {
        Command::Serve { addr } => cli::serve(addr, config),
        Command::Check { file } => return cli::check(&file),
        Command::Decide(args) => cli::decide(&args, &config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(fault) => fail(&fault),
    }
}

fn run_lambda(config: Config) -> Result<(), String> {
    // Lambda hands a process one invocation at a time, so worker threads buy nothing; one
    // thread measured 0.5 ms quicker to ready and 0.6 MiB smaller (BENCHMARKS.md).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let app = wiring::build(&config, Face::Lambda).await?;
        lambda::run(Arc::new(app))
            .await
            .map_err(|e| format!("Lambda runtime stopped: {e}"))
    })
}

fn fail(fault: &str) -> ExitCode {
    eprintln!("conditional-recording: {fault}");
    ExitCode::FAILURE
}
