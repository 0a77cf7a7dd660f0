//! The names every command module uses.

pub(crate) use std::io::{IsTerminal, Read, Write};
pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::sync::Arc;
pub(crate) use std::process::ExitCode;
pub(crate) use clap::{Parser, Subcommand};
pub(crate) use safehold_core::connections::{self, ConnectionInput};
pub(crate) use safehold_core::archive::ArchiveReader;
pub(crate) use safehold_core::backup::{self, BackupRequest, DEFAULT_ZSTD_LEVEL};
pub(crate) use safehold_core::configurations::BackupType;
pub(crate) use safehold_core::repository::Repository;
pub(crate) use safehold_core::secrets::{Keychain, SecretStore};
pub(crate) use safehold_core::source::{self, CancelToken, Progress, ProgressSink, SourceSpec};
pub(crate) use safehold_core::keys::unlock::KeySources;
pub(crate) use safehold_core::migrate::{records, MigrationReport, ExportFormat, MigrationSpec, MigrationType};
pub(crate) use safehold_core::auth::{audit, operators};
pub(crate) use safehold_core::{configurations, context, demo, restore, Ctx, Error, ErrorCode};

pub(crate) use crate::args::*;
pub(crate) use crate::common::*;
pub(crate) use crate::output::*;
