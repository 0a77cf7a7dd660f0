use chrono::TimeZone;
use safehold_core::cron::{describe, next_runs, parse, preview};
use safehold_core::ErrorCode;

#[test]
fn common_cron_lines_are_described_in_plain_english() {
    let cases = [
        ("0 2 * * *", "At 02:00, every day"),
        ("30 3 * * 1-5", "At 03:30, only on Monday through Friday"),
        ("*/15 * * * *", "Every 15 minutes"),
        ("0 * * * *", "At minute 0 of every hour"),
        ("0 4 1 * *", "At 04:00, on day 1 of the month"),
        ("0 0 * * 0,6", "At 00:00, only on Sunday and Saturday"),
        ("*/5 * * * * *", "Every 5 seconds"),
        ("0 6 * 1 *", "At 06:00, every day, in January"),
        ("@daily", "At 00:00, every day"),
    ];
    for (line, expected) in cases {
        assert_eq!(describe(line), expected, "description of {line}");
        assert!(parse(line).is_ok(), "{line} is valid");
    }
}

#[test]
fn invalid_cron_lines_are_refused_with_the_reason() {
    for line in ["", "not a cron", "61 * * * *", "* * * *", "0 25 * * *", "0 0 31 2 *"] {
        let err = parse(line).expect_err(line);
        assert_eq!(err.code, ErrorCode::Validation, "{line}");
        assert!(
            err.message.contains("cron") || err.message.contains("schedule"),
            "the message for {line:?} says it is the schedule: {}",
            err.message
        );
    }
    let err = parse("* * * *").expect_err("4 fields");
    assert!(err.message.contains("4 field"), "says how many fields were given: {}", err.message);
}

#[test]
fn the_next_runs_follow_the_schedule() {
    let cron = parse("0 2 * * *").expect("valid");
    let start = chrono::Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single().expect("time");
    let runs = next_runs(&cron, start, 3);
    assert_eq!(runs, ["2026-03-02T02:00:00+00:00", "2026-03-03T02:00:00+00:00", "2026-03-04T02:00:00+00:00"]);
    assert_eq!(preview("*/10 * * * *", 3).expect("preview").next_runs.len(), 3);
}
