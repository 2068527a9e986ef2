//! Integration tests: one binary, one module per concern.

mod client;
mod common;
mod fixtures;
mod golden;
mod properties;
mod semantics;
mod vectors;
