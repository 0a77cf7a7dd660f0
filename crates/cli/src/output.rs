//! Output: JSON for scripts, progress on a terminal.

use crate::prelude::*;

/// The exit code of a command that ran but whose real run would be refused — a dry run whose
/// validation found problems — so that scripts can tell (1 is an error, 0 would run).
pub(crate) const EXIT_WOULD_REFUSE: u8 = 3;

static EXIT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Ends the process with `code` once the command has finished and printed its output.
pub(crate) fn exit_with(code: u8) {
    EXIT.store(code, std::sync::atomic::Ordering::SeqCst);
}

/// The exit code of a command that returned without an error.
pub(crate) fn exit_code() -> ExitCode {
    match EXIT.load(std::sync::atomic::Ordering::SeqCst) {
        0 => ExitCode::SUCCESS,
        c => ExitCode::from(c),
    }
}

pub(crate) fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")));
}

/// Progress on a terminal (one updating line on stderr); plain lines when not a terminal.
pub(crate) fn progress_sink(json: bool) -> ProgressSink {
    if json {
        return source::no_progress();
    }
    let tty = std::io::stderr().is_terminal();
    Arc::new(move |p: Progress| {
        let table = p.table.unwrap_or_default();
        if tty {
            eprint!("\r\x1b[2K{} {} {}/{} tables, {} rows  {table}", p.phase, progress_bar(p.tables_done, p.tables_total, 24), p.tables_done, p.tables_total, p.rows);
        } else {
            eprintln!("{} {}/{} tables done, {} rows  {table}", p.phase, p.tables_done, p.tables_total, p.rows);
        }
    })
}

/// `[#########---------------]`: `done` of `total` in `width` cells.
pub(crate) fn progress_bar(done: u64, total: u64, width: usize) -> String {
    let cells = u64::try_from(width).unwrap_or(0);
    let filled = (done.min(total) * cells).checked_div(total).map_or(0, |f| usize::try_from(f).unwrap_or(width));
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

pub(crate) fn end_progress(json: bool) {
    if !json && std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K");
    }
}
