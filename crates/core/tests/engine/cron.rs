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

#[test]
fn next_runs_across_daylight_saving_changes_keep_the_wall_clock_time() {
    use chrono_tz::Europe::Berlin;
    // Spring forward on 29 March 2026 (02:00 → 03:00), fall back on 25 October 2026.
    let daily_noon = parse("0 12 * * *").expect("valid");
    let before_spring = Berlin.with_ymd_and_hms(2026, 3, 27, 13, 0, 0).single().expect("time");
    assert_eq!(
        next_runs(&daily_noon, before_spring, 3),
        ["2026-03-28T12:00:00+01:00", "2026-03-29T12:00:00+02:00", "2026-03-30T12:00:00+02:00"],
        "noon stays noon; the day of the change is 23 hours long"
    );
    let before_fall = Berlin.with_ymd_and_hms(2026, 10, 24, 13, 0, 0).single().expect("time");
    assert_eq!(next_runs(&daily_noon, before_fall, 2), ["2026-10-25T12:00:00+01:00", "2026-10-26T12:00:00+01:00"]);
    // A time that does not exist on the spring day (02:30) runs at the first moment after the gap,
    // once; the other days keep 02:30.
    let half_past_two = parse("30 2 * * *").expect("valid");
    assert_eq!(
        next_runs(&half_past_two, before_spring, 3),
        ["2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    );
    // A time that happens twice on the autumn day (02:30) runs once.
    let autumn = next_runs(&half_past_two, Berlin.with_ymd_and_hms(2026, 10, 24, 13, 0, 0).single().expect("time"), 3);
    let on_the_day: Vec<&String> = autumn.iter().filter(|r| r.starts_with("2026-10-25")).collect();
    assert_eq!(on_the_day.len(), 1, "{autumn:?}");
}
