//! Integration tests: one binary, one module per concern.

mod analysis;
mod analysis_html;
mod client;
mod common;
mod events;
mod fixtures;
mod golden;
mod http;
mod integrations;
mod options;
mod outages;
mod properties;
mod recorder;
#[cfg(feature = "redis")]
mod redis;
mod remote;
mod semantics;
mod server;
mod streaming;
mod vectors;
