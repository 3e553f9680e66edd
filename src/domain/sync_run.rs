//! Sync runs and connector schedules.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// Trigger that queued a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncTrigger {
    Manual,
    Schedule,
    Resume,
    Confirm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    Pending,
    Running,
    Done,
    Error,
    Cancelled,
}

impl SyncState {
    pub fn is_finished(self) -> bool {
        matches!(self, SyncState::Done | SyncState::Error | SyncState::Cancelled)
    }

    /// Returns the state's name in the API, as clients see it in `Sync.state`.
    pub fn api_name(self) -> &'static str {
        match self {
            SyncState::Pending => "STATE_PENDING",
            SyncState::Running => "STATE_RUNNING",
            SyncState::Done => "STATE_DONE",
            SyncState::Error => "STATE_ERROR",
            SyncState::Cancelled => "STATE_CANCELLED",
        }
    }
}

/// One run of a connector's sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRun {
    pub id: String,
    pub app_id: String,
    pub connector_id: String,
    pub trigger: SyncTrigger,
    pub state: SyncState,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub error: String,
    pub data_drop: bool,
    pub artifact_url: String,
    pub confirmed: bool,
    /// While running: when the claim lapses unless the worker sends a heartbeat.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Idempotency key of the ForceSync that queued it.
    pub request_id: Option<String>,
    pub revision: u64,
}

/// A connector's cron schedule and the scheduler's progress through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub cron_spec: String,
    /// IANA name; empty means UTC.
    pub timezone: String,
    /// Next run the scheduler will queue.
    pub next_run_at: Option<DateTime<Utc>>,
    /// Last run the scheduler queued or skipped.
    pub last_run_at: Option<DateTime<Utc>>,
}

/// A parsed cron spec in a timezone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    timezone: Tz,
}

/// Reason a schedule was rejected. The message names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0}")]
    CronSpec(String),
    #[error("{0}")]
    Timezone(String),
}

impl CronSchedule {
    /// Parses a five-field (or six-field, seconds first) cron spec, or one of the nicknames
    /// such as `@daily`, and an IANA timezone.
    pub fn parse(cron_spec: &str, timezone: &str) -> Result<Self, ScheduleError> {
        let shown = super::connector_text::shorten(cron_spec);
        let cron_spec = match cron_spec.trim() {
            nickname if nickname.starts_with('@') => expand_nickname(nickname).ok_or_else(|| {
                let known: Vec<&str> = NICKNAMES.iter().map(|(name, _)| *name).collect();
                ScheduleError::CronSpec(format!("{shown} is not a known cron nickname; use one of {} or cron fields", known.join(", ")))
            })?,
            fields => fields,
        };
        let fields = cron_spec.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(ScheduleError::CronSpec(format!(
                "{shown} has {fields} fields; expected 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)"
            )));
        }
        let cron = Cron::from_str(cron_spec).map_err(|error| {
            let reason = value_out_of_range(cron_spec).unwrap_or_else(|| error.to_string());
            ScheduleError::CronSpec(format!("{shown} is not a valid cron spec: {reason}"))
        })?;
        let timezone = if timezone.is_empty() {
            Tz::UTC
        } else {
            timezone.parse::<Tz>().map_err(|_| {
                ScheduleError::Timezone(format!(
                    "{} is not an IANA timezone name such as Europe/Berlin or UTC",
                    super::connector_text::shorten(timezone)
                ))
            })?
        };
        Ok(Self { cron, timezone })
    }

    /// Returns the first run strictly after `after`, in UTC.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.timezone);
        self.cron.find_next_occurrence(&local, false).ok().map(|next| next.with_timezone(&Utc))
    }

    /// Returns up to `count` runs after `after`, in UTC.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut runs = Vec::with_capacity(count);
        let mut cursor = after;
        while runs.len() < count {
            let Some(next) = self.next_after(cursor) else { break };
            runs.push(next);
            cursor = next;
        }
        runs
    }
}

/// Cron nicknames and the five-field specs they stand for.
const NICKNAMES: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// Returns the five-field spec of a nickname such as `@daily`, in any letter case.
fn expand_nickname(nickname: &str) -> Option<&'static str> {
    NICKNAMES.iter().find(|(name, _)| name.eq_ignore_ascii_case(nickname)).map(|(_, spec)| *spec)
}

/// Names the first number in `cron_spec` that lies outside its field's range, which
/// croner reports only as "Number out of bounds". Names (`MON`, `JAN`), `L`, `W` and `#`
/// are left to croner.
fn value_out_of_range(cron_spec: &str) -> Option<String> {
    const FIVE_FIELDS: [(&str, u32, u32); 5] =
        [("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7)];
    let fields: Vec<&str> = cron_spec.split_whitespace().collect();
    let ranges: Vec<(&str, u32, u32)> = match fields.len() {
        5 => FIVE_FIELDS.to_vec(),
        6 => std::iter::once(("second", 0, 59)).chain(FIVE_FIELDS).collect(),
        _ => return None,
    };
    for (field, (name, min, max)) in fields.iter().zip(ranges) {
        for part in field.split(',') {
            // The step after `/` counts intervals, not values of the field.
            let values = part.split('/').next().unwrap_or_default();
            for value in values.split('-') {
                if let Ok(number) = value.parse::<u32>()
                    && !(min..=max).contains(&number)
                {
                    return Some(format!("{name} {number} is outside {min}-{max}"));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn out_of_range_values_are_named() {
        let cases = [
            ("61 3 * * *", "minute 61 is outside 0-59"),
            ("0 25 * * *", "hour 25 is outside 0-23"),
            ("0 3 0 * *", "day of month 0 is outside 1-31"),
            ("0 3 1-40 * *", "day of month 40 is outside 1-31"),
            ("0 3 * 13 *", "month 13 is outside 1-12"),
            ("0 3 * * 1,9", "day of week 9 is outside 0-7"),
            ("70 0 3 * * *", "second 70 is outside 0-59"),
        ];
        for (spec, expected) in cases {
            let Err(ScheduleError::CronSpec(message)) = CronSchedule::parse(spec, "") else {
                panic!("{spec:?} was accepted");
            };
            assert!(message.contains(expected), "{spec:?}: {message}");
        }
        // A step may exceed the field's range, and croner decides whether it is valid.
        assert_eq!(value_out_of_range("*/90 * * * *"), None);
    }

    #[test]
    fn five_field_spec_runs_in_its_timezone() {
        let schedule = CronSchedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        // 02:30 in Berlin in winter is 01:30 UTC.
        assert_eq!(schedule.next_after(utc("2026-01-10T00:00:00Z")), Some(utc("2026-01-10T01:30:00Z")));
    }

    #[test]
    fn dst_gap_time_runs_after_gap() {
        // Europe/Berlin skips 02:00-03:00 on 2026-03-29; croner runs fixed-time jobs at the
        // first valid time after the gap on the same day.
        let schedule = CronSchedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let next = schedule.next_after(utc("2026-03-28T23:00:00Z")).unwrap();
        let berlin = next.with_timezone(&chrono_tz::Europe::Berlin);
        assert_eq!(berlin, chrono_tz::Europe::Berlin.with_ymd_and_hms(2026, 3, 29, 3, 0, 0).unwrap());
    }

    #[test]
    fn fixed_time_in_dst_repeat_runs_once() {
        // Europe/Berlin repeats 02:00-03:00 on 2026-10-25; a fixed-time job runs only at the
        // first occurrence, so the two runs after it are a day apart.
        let schedule = CronSchedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let runs = schedule.upcoming(utc("2026-10-24T12:00:00Z"), 3);
        assert_eq!(runs[0], utc("2026-10-25T00:30:00Z"));
        assert_eq!(runs[1], utc("2026-10-26T01:30:00Z"));
    }

    #[test]
    fn nicknames_run_like_their_fields() {
        let after = Utc.with_ymd_and_hms(2026, 7, 15, 10, 30, 0).unwrap();
        let cases = [
            ("@hourly", Utc.with_ymd_and_hms(2026, 7, 15, 11, 0, 0).unwrap()),
            ("@daily", Utc.with_ymd_and_hms(2026, 7, 16, 0, 0, 0).unwrap()),
            ("@Midnight", Utc.with_ymd_and_hms(2026, 7, 16, 0, 0, 0).unwrap()),
            ("@weekly", Utc.with_ymd_and_hms(2026, 7, 19, 0, 0, 0).unwrap()),
            ("@monthly", Utc.with_ymd_and_hms(2026, 8, 1, 0, 0, 0).unwrap()),
            ("@yearly", Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()),
        ];
        for (nickname, expected) in cases {
            let schedule = CronSchedule::parse(nickname, "UTC").unwrap();
            assert_eq!(schedule.next_after(after), Some(expected), "{nickname}");
        }
    }

    #[test]
    fn unknown_nickname_lists_the_known_ones() {
        let error = CronSchedule::parse("@reboot", "UTC").unwrap_err().to_string();
        assert!(error.starts_with("\"@reboot\" is not a known cron nickname"), "{error}");
        assert!(error.contains("@daily"), "{error}");
    }

    #[test]
    fn bad_spec_and_timezone_are_rejected() {
        assert!(matches!(CronSchedule::parse("61 * * * *", "UTC"), Err(ScheduleError::CronSpec(_))));
        assert!(matches!(CronSchedule::parse("* * *", "UTC"), Err(ScheduleError::CronSpec(_))));
        assert!(matches!(CronSchedule::parse("0 * * * *", "Mars/Olympus"), Err(ScheduleError::Timezone(_))));
    }
}
