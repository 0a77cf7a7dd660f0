//! One module per area of the command line; each turns parsed arguments into engine calls and
//! prints what they return.

pub(crate) mod backup;
pub(crate) mod catalog;
pub(crate) mod config;
pub(crate) mod connection;
pub(crate) mod demo;
pub(crate) mod engine;
pub(crate) mod history;
pub(crate) mod key;
pub(crate) mod operator;
pub(crate) mod protect;
pub(crate) mod restore;
pub(crate) mod schedule;
pub(crate) mod storage;
pub(crate) mod tenant;
pub(crate) mod verify;
