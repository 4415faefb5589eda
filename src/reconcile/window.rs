//! The period a reconciliation accounts for, from `reconcile`'s options or the sweep's.

use std::time::Duration;

use time::OffsetDateTime;

/// The longest window a run accounts for.
pub const MAX_WINDOW: Duration = Duration::from_secs(31 * 86_400);

/// The period a run accounts for: `from <= date_created < to`, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: i64,
    pub to: i64,
}

/// Why a window cannot be had, in one line naming the option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("give --since DURATION or --from TIME")]
    Missing,
    #[error("--since and --from cannot be given together")]
    Both,
    #[error("--to goes with --from, not --since")]
    ToWithSince,
    #[error("--since {0:?}: give a number and a unit, m, h or d (90m, 24h, 7d)")]
    Duration(String),
    #[error(
        "{option} {text:?}: give an RFC 3339 time (2026-12-01T09:00:00Z) or a date (2026-12-01)"
    )]
    Time { option: &'static str, text: String },
    #[error("--from must come before --to")]
    Empty,
    #[error("the window is {hours} hours; at most 31 days (744 hours) are reconciled at once")]
    TooLong { hours: i64 },
}

impl Window {
    /// From the command's options, `now` being the Unix time of the run.
    pub fn from_options(
        since: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        now: i64,
    ) -> Result<Window, WindowError> {
        let window = match (since, from, to) {
            (Some(_), Some(_), _) => return Err(WindowError::Both),
            (Some(_), None, Some(_)) => return Err(WindowError::ToWithSince),
            (Some(since), None, None) => {
                let length =
                    parse_duration(since).ok_or_else(|| WindowError::Duration(since.to_owned()))?;
                Window {
                    from: now.saturating_sub(length),
                    to: now,
                }
            }
            (None, Some(from), to) => Window {
                from: parse_time(from, "--from")?,
                to: to.map_or(Ok(now), |to| parse_time(to, "--to"))?,
            },
            (None, None, _) => return Err(WindowError::Missing),
        };
        if window.to <= window.from {
            return Err(WindowError::Empty);
        }
        let length = window.to - window.from;
        if length > MAX_WINDOW.as_secs() as i64 {
            return Err(WindowError::TooLong {
                hours: (length + 3_599) / 3_600,
            });
        }
        Ok(window)
    }

    pub fn contains(&self, at: i64) -> bool {
        self.from <= at && at < self.to
    }

    /// The UTC dates the archive is asked for: the first day the window touches, and the day
    /// after its last. Twilio's reference reads `DateCreated<` both as "on or before that
    /// day" and as "before that day's midnight"; asking for the day after covers the last
    /// day under either reading, and exact times trim what is outside the window.
    pub fn dates(&self) -> (time::Date, time::Date) {
        let date = |t: i64| {
            OffsetDateTime::from_unix_timestamp(t)
                .map(OffsetDateTime::date)
                .unwrap_or(time::Date::MIN)
        };
        // `to` is excluded: its last second decides the last day.
        let last = date(self.to - 1);
        (date(self.from), last.next_day().unwrap_or(last))
    }
}

/// `90m`, `24h`, `7d`: seconds.
fn parse_duration(text: &str) -> Option<i64> {
    let (number, unit) = text.split_at(text.len().checked_sub(1)?);
    let unit = match unit {
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: i64 = number.parse().ok()?;
    number.checked_mul(unit).filter(|&s| s > 0)
}

/// RFC 3339, or a date (its 00:00 UTC).
fn parse_time(text: &str, option: &'static str) -> Result<i64, WindowError> {
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    if let Ok(at) = OffsetDateTime::parse(text, rfc3339) {
        return Ok(at.unix_timestamp());
    }
    let date_only = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, date_only)
        .map(|date| date.midnight().assume_utc().unix_timestamp())
        .map_err(|_| WindowError::Time {
            option,
            text: text.to_owned(),
        })
}
