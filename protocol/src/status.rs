//! The monitoring-plugin status shared by the client's self-test and the relay's check.
//!
//! Nagios, Icinga and their kin read the exit code: 0 OK, 1 WARNING, 2 CRITICAL,
//! 3 UNKNOWN. When several findings combine, the worst wins, and a failure is worse than
//! not knowing: CRITICAL > UNKNOWN > WARNING > OK.

use std::fmt;

use serde::Serialize;

/// A health state; its number is the plugin exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Everything checked is fine.
    Ok = 0,
    /// Works, but needs attention soon.
    Warning = 1,
    /// Broken, or about to be.
    Critical = 2,
    /// The check itself could not run.
    Unknown = 3,
}

impl Status {
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// How bad it is, for picking the worst.
    pub fn severity(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Unknown => 2,
            Status::Critical => 3,
        }
    }

    /// The worse of two states.
    pub fn worst(self, other: Status) -> Status {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// The upper-case label of the plugin convention.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_outranks_not_knowing_which_outranks_a_warning() {
        assert_eq!(Status::Unknown.worst(Status::Critical), Status::Critical);
        assert_eq!(Status::Warning.worst(Status::Unknown), Status::Unknown);
        assert_eq!(Status::Ok.worst(Status::Warning), Status::Warning);
        assert_eq!(Status::Critical.worst(Status::Ok), Status::Critical);
    }

    #[test]
    fn exit_codes_follow_the_plugin_convention() {
        let codes: Vec<u8> = [
            Status::Ok,
            Status::Warning,
            Status::Critical,
            Status::Unknown,
        ]
        .iter()
        .map(|s| s.code())
        .collect();
        assert_eq!(codes, vec![0, 1, 2, 3]);
    }
}
