//! Integration tests of the provider through the OpenFeature SDK's client API: one binary,
//! one module per concern.

mod common;
mod context;
mod lifecycle;
mod reasons;
#[path = "../../../tests/it/server.rs"]
#[expect(
    dead_code,
    reason = "splitkit's own test server, of which these tests use a part"
)]
mod server;
mod tracking;
mod values;
