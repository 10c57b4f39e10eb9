//! Integration tests: real relay processes and real clients on loopback.
