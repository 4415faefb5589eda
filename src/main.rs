use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use conditional_recording::cli::{self, Cli, Command};
use conditional_recording::config::{Config, RulesLocation};
use conditional_recording::handler::{App, Settings};
use conditional_recording::sources::StaticRules;
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
        Command::Decide {
            rules,
            attributes,
            queue_sid,
            queue_name,
        } => cli::decide(
            &rules,
            &attributes,
            queue_sid.as_deref(),
            queue_name.as_deref(),
            &config,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(fault) => fail(&fault),
    }
}

fn run_lambda(config: Config) -> Result<(), String> {
    let rules = match &config.rules {
        RulesLocation::File(path) => StaticRules::from_file(path).map_err(|e| e.to_string())?,
        RulesLocation::Unset => {
            return Err("no rules source: set RULES_FILE to a rules document".into());
        }
    };
    let app = Arc::new(App {
        rules,
        settings: Settings {
            fail_policy: config.fail_policy,
        },
    });
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime
        .block_on(lambda::run(app))
        .map_err(|e| format!("Lambda runtime stopped: {e}"))
}

fn fail(fault: &str) -> ExitCode {
    eprintln!("conditional-recording: {fault}");
    ExitCode::FAILURE
}
