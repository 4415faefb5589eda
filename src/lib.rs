//! conditional-recording: decides, server-side, whether Twilio TaskRouter records each Flex
//! call, answering TaskRouter's assignment callback with a `conference` instruction.

pub mod cli;
pub mod config;
pub mod enforcement;
pub mod events;
pub mod handler;
pub mod lambda;
pub mod ledger;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod ports;
pub mod proof;
pub mod publish;
pub mod reconcile;
pub mod refusal_log;
pub mod rules;
pub mod serve;
pub mod service;
pub mod sid;
pub mod signature;
pub mod sources;
pub mod taskrouter;
pub mod wiring;
