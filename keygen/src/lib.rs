//! Offline key generation, paper backups and roster editing for breakglass.
//!
//! Everything here runs on an air-gapped machine: this crate links no networking crate,
//! and a test walks its dependency tree to keep it that way.

pub mod bip39words;
pub mod cli;
pub mod devdomain;
pub mod keyio;
pub mod pincard;
pub mod prompt;
pub mod rosterfile;
pub mod slip39;
