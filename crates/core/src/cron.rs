//! Cron lines of backup configurations: validation, a human-readable description, next run times.
//! Five fields (minute hour day-of-month month day-of-week) or six with seconds first; the
//! `@daily`-style nicknames too.

use chrono::{DateTime, Local, TimeZone};
use croner::Cron;
use serde::Serialize;
use ts_rs::TS;

use crate::error::{Error, Result};

/// What the UI shows next to a cron line.
#[derive(Debug, Clone, Serialize, TS)]
pub struct CronPreview {
    pub description: String,
    /// The next run times (RFC 3339 with the workstation's offset).
    pub next_runs: Vec<String>,
    /// The time zone schedules are evaluated in: the workstation's (e.g. "Europe/Berlin, UTC+01:00").
    pub time_zone: String,
}

/// A configuration's time zone: an IANA name (e.g. "Europe/Berlin"), or the workstation's when
/// `None` or empty.
pub fn parse_time_zone(name: Option<&str>) -> Result<Option<chrono_tz::Tz>> {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        None => Ok(None),
        Some(n) => n.parse::<chrono_tz::Tz>().map(Some).map_err(|_| {
            Error::validation(format!("\"{n}\" is not a time zone; use an IANA name such as Europe/Berlin or America/New_York, or leave it empty for the workstation's"))
        }),
    }
}

/// The next run strictly after `after`, in the configuration's time zone (or the workstation's).
pub fn next_after(cron: &Cron, tz: Option<chrono_tz::Tz>, after: DateTime<Local>) -> Option<DateTime<Local>> {
    match tz {
        Some(tz) => cron.find_next_occurrence(&after.with_timezone(&tz), false).ok().map(|t| t.with_timezone(&Local)),
        None => cron.find_next_occurrence(&after, false).ok(),
    }
}

/// A preview in a configuration's time zone (or the workstation's).
pub fn preview_in(line: &str, time_zone: Option<&str>, count: usize) -> Result<CronPreview> {
    let cron = parse(line)?;
    match parse_time_zone(time_zone)? {
        None => preview(line, count),
        Some(tz) => {
            let now = chrono::Utc::now().with_timezone(&tz);
            Ok(CronPreview { description: describe(line), next_runs: next_runs(&cron, now, count), time_zone: format!("{tz}, UTC{}", now.format("%:z")) })
        }
    }
}

/// The workstation's time zone, by name when the system says it, with its current offset.
pub fn time_zone() -> String {
    let offset = Local::now().format("UTC%:z").to_string();
    match iana_time_zone::get_timezone() {
        Ok(name) => format!("{name}, {offset}"),
        Err(_) => offset,
    }
}

/// Parses a cron line; the error names the line and what is wrong with it.
pub fn parse(line: &str) -> Result<Cron> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Err(Error::validation("the schedule is empty: give a cron line such as \"0 2 * * *\" (every day at 02:00)"));
    }
    let fields = trimmed.split_whitespace().count();
    if !trimmed.starts_with('@') && !(5..=6).contains(&fields) {
        return Err(Error::validation(format!(
            "invalid cron line \"{trimmed}\": it has {fields} field(s); use 5 (minute hour day month weekday) or 6 (with seconds first), e.g. \"0 2 * * *\""
        )));
    }
    let cron = Cron::new(trimmed).with_seconds_optional().parse().map_err(|e| {
        Error::validation(format!(
            "invalid cron line \"{trimmed}\": {e}; use minute hour day month weekday, e.g. \"0 2 * * *\""
        ))
    })?;
    // A line that can never fire (e.g. 30 February) is as wrong as a malformed one.
    cron.find_next_occurrence(&Local::now(), false).map_err(|_| {
        Error::validation(format!("the cron line \"{trimmed}\" never runs: no date matches it"))
    })?;
    Ok(cron)
}

/// A description and the next `count` run times of a valid cron line.
pub fn preview(line: &str, count: usize) -> Result<CronPreview> {
    let cron = parse(line)?;
    Ok(CronPreview { description: describe(line), next_runs: next_runs(&cron, Local::now(), count), time_zone: time_zone() })
}

/// The next `count` run times after `after`.
pub fn next_runs<Tz: TimeZone>(cron: &Cron, after: DateTime<Tz>, count: usize) -> Vec<String>
where
    Tz::Offset: std::fmt::Display,
{
    cron.iter_after(after).take(count).map(|t| t.to_rfc3339()).collect()
}

const DAYS: [&str; 8] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const MONTHS: [&str; 12] = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December",
];

/// A plain-English description of a cron line ("At 02:00, every day"). Assumes a valid line.
pub fn describe(line: &str) -> String {
    let line = line.trim();
    match line {
        "@yearly" | "@annually" => return "At 00:00 on 1 January".into(),
        "@monthly" => return "At 00:00 on day 1 of every month".into(),
        "@weekly" => return "At 00:00, only on Sunday".into(),
        "@daily" | "@midnight" => return "At 00:00, every day".into(),
        "@hourly" => return "At minute 0 of every hour".into(),
        _ => {}
    }
    let f: Vec<&str> = line.split_whitespace().collect();
    let (sec, rest) = if f.len() == 6 { (Some(f[0]), &f[1..]) } else { (None, &f[..]) };
    let [min, hour, dom, month, dow] = [rest[0], rest[1], rest[2], rest[3], rest[4]];
    let time = describe_time(sec, min, hour);
    let mut day = describe_days(dom, dow);
    // "Every 15 minutes" needs no ", every day"; "At 02:00" does.
    if num(hour).is_none() && day == ", every day" {
        day.clear();
    }
    if month != "*" {
        day.push_str(&format!(", in {}", list(month, |n| MONTHS.get(n.wrapping_sub(1)).map(|s| s.to_string()))));
    }
    format!("{time}{day}")
}

fn num(s: &str) -> Option<usize> {
    s.parse().ok()
}

fn step(s: &str) -> Option<usize> {
    s.strip_prefix("*/").and_then(num)
}

fn describe_time(sec: Option<&str>, min: &str, hour: &str) -> String {
    let sec_zero = matches!(sec, None | Some("0") | Some("00"));
    if let Some(s) = sec {
        if s == "*" && min == "*" && hour == "*" {
            return "Every second".into();
        }
        if let (Some(n), "*", "*") = (step(s), min, hour) {
            return format!("Every {n} seconds");
        }
    }
    if sec_zero {
        if let (Some(m), Some(h)) = (num(min), num(hour)) {
            return format!("At {h:02}:{m:02}");
        }
        if let Some(m) = num(min) {
            if hour == "*" {
                return format!("At minute {m} of every hour");
            }
            if let Some(n) = step(hour) {
                return format!("At minute {m} past every {n} hours");
            }
            return format!("At minute {m} past hour {hour}");
        }
        if min == "*" && hour == "*" {
            return "Every minute".into();
        }
        if let Some(n) = step(min) {
            return if hour == "*" { format!("Every {n} minutes") } else { format!("Every {n} minutes during hour {hour}") };
        }
    }
    let mut s = format!("At minute {min} of hour {hour}");
    if let Some(sec) = sec {
        s = format!("At second {sec}, minute {min} of hour {hour}");
    }
    s
}

fn describe_days(dom: &str, dow: &str) -> String {
    match (dom, dow) {
        ("*" | "?", "*" | "?") => ", every day".into(),
        ("*" | "?", _) => format!(", only on {}", list(dow, |n| DAYS.get(n).map(|s| s.to_string()))),
        (_, "*" | "?") => format!(", on day {dom} of the month"),
        _ => format!(", on day {dom} of the month and on {}", list(dow, |n| DAYS.get(n).map(|s| s.to_string()))),
    }
}

/// Renders "1-5" as "Monday through Friday" and "1,3" as "Monday and Wednesday" through `name`.
fn list(field: &str, name: impl Fn(usize) -> Option<String>) -> String {
    let render = |t: &str| num(t).and_then(&name).unwrap_or_else(|| t.to_string());
    let parts: Vec<String> = field
        .split(',')
        .map(|p| match p.split_once('-') {
            Some((a, b)) => format!("{} through {}", render(a), render(b)),
            None => render(p),
        })
        .collect();
    match parts.len() {
        0 | 1 => parts.concat(),
        n => format!("{} and {}", parts[..n - 1].join(", "), parts[n - 1]),
    }
}
