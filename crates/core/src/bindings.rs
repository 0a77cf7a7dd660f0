//! TypeScript types for the UI, generated from the Rust types that cross the command boundary.
//! The generated file is committed at `ui/src/api/bindings.ts`; a test fails when it is stale
//! (`SAFEHOLD_WRITE_BINDINGS=1 cargo test -p safehold-core bindings` rewrites it).

use ts_rs::{Config, TS};

use crate::{auth, backup, checks, configurations, context, keys, copies, connections, cron, demo, error, history, migrate, restore, recovery, retention, scheduler, secrets, source, storage};

/// Where the generated file lives, relative to the repository root.
pub const PATH: &str = "ui/src/api/bindings.ts";

/// The whole generated file.
pub fn typescript() -> String {
    let cfg = Config::new().with_large_int("number");
    let decls = [
        error::ErrorCode::decl(&cfg),
        error::Error::decl(&cfg),
        error::FieldError::decl(&cfg),
        configurations::BackupType::decl(&cfg),
        configurations::MissedRuns::decl(&cfg),
        configurations::BackupConfiguration::decl(&cfg),
        scheduler::ConfigurationStatus::decl(&cfg),
        configurations::ConfigurationInput::decl(&cfg),
        cron::CronPreview::decl(&cfg),
        connections::ConnectionKind::decl(&cfg),
        connections::TlsMode::decl(&cfg),
        connections::Connection::decl(&cfg),
        connections::ConnectionInput::decl(&cfg),
        connections::ConnectionReport::decl(&cfg),
        connections::TenantTable::decl(&cfg),
        storage::StorageType::decl(&cfg),
        storage::BackupStorage::decl(&cfg),
        storage::StorageChange::decl(&cfg),
        keys::custody::KeyCustody::decl(&cfg),
        keys::custody::WriterInfo::decl(&cfg),
        history::JobStatus::decl(&cfg),
        history::BackupExecution::decl(&cfg),
        history::SecondCopy::decl(&cfg),
        checks::BackupCheck::decl(&cfg),
        history::RestoreOperation::decl(&cfg),
        history::MigrationJob::decl(&cfg),
        demo::DemoReport::decl(&cfg),
        crate::jobs::JobKind::decl(&cfg),
        context::JobEvent::decl(&cfg),
        backup::BackupOutcome::decl(&cfg),
        restore::RestoreType::decl(&cfg),
        restore::PlanBackup::decl(&cfg),
        restore::PointInTime::decl(&cfg),
        restore::RestorePlan::decl(&cfg),
        restore::RestoreOutcome::decl(&cfg),
        crate::protect::AtPlan::decl(&cfg),
        crate::protect::configured::TimelineBackup::decl(&cfg),
        crate::protect::configured::TimelineSpan::decl(&cfg),
        crate::protect::configured::Timeline::decl(&cfg),
        crate::protect::configured::SecondRequest::decl(&cfg),
        crate::protect::configured::SecondOutcome::decl(&cfg),
        restore::records::RestoreForm::decl(&cfg),
        source::pg_apply::TableChange::decl(&cfg),
        restore::RestoreTestTable::decl(&cfg),
        restore::RestoreTestReport::decl(&cfg),
        retention::RetentionAction::decl(&cfg),
        retention::RetentionItem::decl(&cfg),
        retention::RetentionPlan::decl(&cfg),
        recovery::RebuildReport::decl(&cfg),
        storage::StorageUsage::decl(&cfg),
        storage::UsageSample::decl(&cfg),
        storage::HealthCheck::decl(&cfg),
        secrets::KeychainWait::decl(&cfg),
        demo::PostgresOffer::decl(&cfg),
        demo::PostgresDemo::decl(&cfg),
        storage::StorageCredentials::decl(&cfg),
        storage::RemoteStorageInput::decl(&cfg),
        copies::BackupCopy::decl(&cfg),
        migrate::MigrationType::decl(&cfg),
        migrate::Resolution::decl(&cfg),
        migrate::ExportFormat::decl(&cfg),
        auth::operators::Role::decl(&cfg),
        auth::operators::Permission::decl(&cfg),
        auth::operators::Acting::decl(&cfg),
        auth::operators::Operator::decl(&cfg),
        auth::operators::SessionInfo::decl(&cfg),
        auth::audit::AuditEntry::decl(&cfg),
        auth::audit::AuditFilter::decl(&cfg),
        migrate::TableMapping::decl(&cfg),
        migrate::MigrationSpec::decl(&cfg),
        migrate::Problem::decl(&cfg),
        migrate::TableReport::decl(&cfg),
        migrate::MigrationReport::decl(&cfg),
        migrate::portable::ExportedFile::decl(&cfg),
        migrate::rules::Rule::decl(&cfg),
        migrate::rules::Action::decl(&cfg),
        migrate::rules::FakeKind::decl(&cfg),
        migrate::rules::Op::decl(&cfg),
        migrate::records::TenantRow::decl(&cfg),
    ];
    let mut out = String::from(
        "// Generated from the Rust types by safehold-core (src/bindings.rs). Do not edit by hand:\n\
         // run `make bindings` after changing a type.\n\n\
         export type JsonValue = number | string | boolean | Array<JsonValue> | { [key in string]?: JsonValue } | null;\n\n",
    );
    for d in decls {
        out.push_str("export ");
        out.push_str(&d);
        out.push_str("\n\n");
    }
    // Values the UI starts from, as the engine defines them.
    let defaults = serde_json::to_string(&configurations::ConfigurationInput::default()).unwrap_or_default();
    out.push_str(&format!("/** A new configuration's settings until someone changes them (`ConfigurationInput::default()`). */\nexport const DEFAULT_CONFIGURATION_INPUT: ConfigurationInput = {defaults};\n"));
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}
