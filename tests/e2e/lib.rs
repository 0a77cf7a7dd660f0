//! End-to-end tests live in main.rs.
