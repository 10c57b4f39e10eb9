//! The breakglass relay: QUIC transport with pinned keys, admission against the roster,
//! durable store-and-forward.
//!
//! `main.rs` only parses the command line; [`server`] owns the accept loop and the shared
//! state, [`connection`] one member's connection, [`registry`] who is connected,
//! [`store`] everything on disk and [`transport`] the QUIC and TLS set-up. [`check`] is
//! the health check for monitoring and [`metrics`] the optional Prometheus listener.

pub mod check;
pub mod cli;
pub mod config;
pub mod connection;
pub mod metrics;
pub mod registry;
pub mod server;
pub mod store;
pub mod transport;
