//! End-to-end tests live in main.rs (run by `make test`).
