//! Schedule triggers: `trigger="schedule:<cron>"` with a 5-field UTC cron expression
//! (minute hour day-of-month month day-of-week; `*`, `n`, `a-b`, `a,b`, `*/n`, `a-b/n`;
//! day-of-week 0-7 with 0 and 7 both Sunday). When both day fields are restricted, either
//! may match (classic cron semantics).

use time::OffsetDateTime;

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

/// A cron expression that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression {expr:?}: {message}")]
pub struct CronError {
    /// The expression.
    pub expr: String,
    /// What is wrong.
    pub message: String,
}

fn field(text: &str, min: u32, max: u32, name: &str) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("bad step {s:?} in {name}"))?;
                if step == 0 {
                    return Err(format!("zero step in {name}"));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let a: u32 = a
                .parse()
                .map_err(|_| format!("bad value {a:?} in {name}"))?;
            let b: u32 = b
                .parse()
                .map_err(|_| format!("bad value {b:?} in {name}"))?;
            (a, b)
        } else {
            let v: u32 = range
                .parse()
                .map_err(|_| format!("bad value {range:?} in {name}"))?;
            (v, if part.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("{name} must be within {min}-{max}"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, text != "*"))
}

impl Cron {
    /// Parses a 5-field expression.
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        let err = |message: String| CronError {
            expr: expr.to_owned(),
            message,
        };
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields.as_slice() else {
            return Err(err(format!("expected 5 fields, got {}", fields.len())));
        };
        let (minutes, _) = field(minute, 0, 59, "minute").map_err(err)?;
        let (hours, _) = field(hour, 0, 23, "hour").map_err(err)?;
        let (days, days_restricted) = field(dom, 1, 31, "day of month").map_err(err)?;
        let (months, _) = field(month, 1, 12, "month").map_err(err)?;
        let (mut weekdays, weekdays_restricted) = field(dow, 0, 7, "day of week").map_err(err)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Self {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_restricted,
            weekdays_restricted,
        })
    }

    /// Whether the minute containing `at` (UTC) is scheduled.
    pub fn matches(&self, at: OffsetDateTime) -> bool {
        let at = at.to_offset(time::UtcOffset::UTC);
        let bit = |set: u64, v: u8| set & (1 << v) != 0;
        let day_ok = bit(self.days, at.day());
        let weekday_ok = bit(self.weekdays, at.weekday().number_days_from_sunday());
        let day_match = match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => day_ok || weekday_ok,
            (true, false) => day_ok,
            (false, true) => weekday_ok,
            (false, false) => true,
        };
        bit(self.minutes, at.minute())
            && bit(self.hours, at.hour())
            && bit(self.months, u8::from(at.month()))
            && day_match
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn parses_and_matches_common_schedules() {
        let every_5 = Cron::parse("*/5 * * * *").unwrap();
        assert!(every_5.matches(datetime!(2026-11-23 10:05 UTC)));
        assert!(!every_5.matches(datetime!(2026-11-23 10:06 UTC)));
        let weekdays_9 = Cron::parse("0 9 * * 1-5").unwrap();
        assert!(
            weekdays_9.matches(datetime!(2026-11-23 09:00 UTC)),
            "a Monday"
        );
        assert!(
            !weekdays_9.matches(datetime!(2026-11-22 09:00 UTC)),
            "a Sunday"
        );
        let sunday = Cron::parse("30 2 * * 7").unwrap();
        assert!(sunday.matches(datetime!(2026-11-22 02:30 UTC)));
        let either = Cron::parse("0 0 1 * 1").unwrap();
        assert!(
            either.matches(datetime!(2026-12-01 00:00 UTC)),
            "1st of the month"
        );
        assert!(either.matches(datetime!(2026-11-23 00:00 UTC)), "a Monday");
        assert!(!either.matches(datetime!(2026-11-24 00:00 UTC)));
        let list = Cron::parse("0,30 8-18/2 * 1,6 *").unwrap();
        assert!(list.matches(datetime!(2026-06-01 10:30 UTC)));
        assert!(!list.matches(datetime!(2026-06-01 11:30 UTC)));
    }

    #[test]
    fn rejects_malformed_expressions() {
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "*/0 * * * *",
            "a * * * *",
            "5-1 * * * *",
            "* * * * 8",
        ] {
            assert!(Cron::parse(bad).is_err(), "{bad}");
        }
    }
}
