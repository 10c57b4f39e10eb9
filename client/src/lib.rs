//! The breakglass client: send, read, follow and chat through the configured relays, with
//! every message verified against the root-signed roster before it is shown.

pub mod audit;
pub mod cli;
pub mod config;
pub mod history;
pub mod messages;
pub mod net;
pub mod selftest;
pub mod session;
