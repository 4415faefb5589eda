//! The integration tests, one crate: the real binary in `serve` and Lambda modes, the SSM
//! emulator (moto), Twilio's SDKs, the Lambda runtime emulator and a TaskRouter stand-in,
//! each started by the test that needs it on 127.0.0.1. Shared helpers: `support` (the binary,
//! a raw HTTP/1.1 client, signed callbacks, fixtures), `standin` (the TaskRouter and Voice
//! REST APIs), `moto` (SSM).

mod counting;
mod moto;
mod standin;
mod support;

mod annotate;
mod audit;
mod cli;
mod events;
mod events_load;
mod faults;
mod field;
mod flex_tasks;
mod lambda_events;
mod lambda_runtime;
mod ledger_core;
mod log_lines;
mod matching;
mod media_store;
mod no_panic;
mod publish;
mod queue_names;
mod reconcile;
mod roots;
mod rules_document;
mod rules_history;
mod serve;
mod service;
mod signature_props;
mod signature_sdk;
mod signatures;
mod ssm;
mod template;
mod voice_api;
