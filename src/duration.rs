//! pg_exclusive_backup.max_duration and warn_duration: when a running
//! backup is due to be voided or warned about, and how its age and the
//! limits read in a log line. Plain Rust: the standing worker acts on it.

/// The two settings, in seconds; 0 turns one off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_seconds: u64,
    pub warn_seconds: u64,
}

impl Limits {
    /// From (max_duration, warn_duration) in whole seconds, 0 when off.
    pub fn of((max_seconds, warn_seconds): (u64, u64)) -> Limits {
        Limits {
            max_seconds,
            warn_seconds,
        }
    }
}

/// What is due for a running backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    Nothing,
    /// It ran past max_duration.
    Void,
    /// It passed the `multiple`-th multiple of warn_duration since the
    /// last warning.
    Warn {
        multiple: u64,
    },
}

const MICROS: i64 = 1_000_000;

fn micros(seconds: u64) -> i64 {
    i64::try_from(seconds)
        .unwrap_or(i64::MAX / MICROS)
        .saturating_mul(MICROS)
}

/// When max_duration voids a backup that started at `start` (any clock in
/// microseconds), if it is set.
pub fn deadline(start: i64, limits: Limits) -> Option<i64> {
    (limits.max_seconds > 0).then(|| start.saturating_add(micros(limits.max_seconds)))
}

/// What is due at `now` for a backup that started at `start`, of which
/// `warned` multiples of warn_duration have been logged; and in how many
/// microseconds the next thing falls due (`None`: never, as things stand).
/// A void comes before a warning due at the same time.
pub fn due(start: i64, now: i64, limits: Limits, warned: u64) -> (Due, Option<i64>) {
    let age = now.saturating_sub(start).max(0);
    if let Some(d) = deadline(start, limits) {
        if now >= d {
            return (Due::Void, Some(0));
        }
    }
    let mut next = deadline(start, limits).map(|d| d - now);
    let mut what = Due::Nothing;
    if limits.warn_seconds > 0 {
        let every = micros(limits.warn_seconds);
        let multiple = (age / every) as u64;
        if multiple > warned {
            what = Due::Warn { multiple };
        }
        let next_warning = start.saturating_add(every.saturating_mul(multiple as i64 + 1)) - now;
        next = Some(next.map_or(next_warning, |n| n.min(next_warning)));
    }
    (what, next)
}

/// An age for a log line: "2 h 00 min", "12 min 05 s", "40 s".
pub fn age_text(micros: i64) -> String {
    let s = (micros.max(0) / MICROS) as u64;
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h} h {m:02} min")
    } else if m > 0 {
        format!("{m} min {sec:02} s")
    } else {
        format!("{sec} s")
    }
}

/// A limit as the setting would be written: "2h", "90min", "45s".
pub fn limit_text(seconds: u64) -> String {
    if seconds % 3600 == 0 {
        format!("{}h", seconds / 3600)
    } else if seconds % 60 == 0 {
        format!("{}min", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = MICROS;

    fn limits(max_seconds: u64, warn_seconds: u64) -> Limits {
        Limits {
            max_seconds,
            warn_seconds,
        }
    }

    #[test]
    fn nothing_is_due_with_both_off() {
        assert_eq!(due(0, 10_000 * S, limits(0, 0), 0), (Due::Nothing, None));
        assert_eq!(deadline(0, limits(0, 60)), None);
    }

    #[test]
    fn the_void_falls_due_at_the_deadline_not_before() {
        let l = limits(3600, 0);
        assert_eq!(deadline(100 * S, l), Some(3700 * S));
        assert_eq!(due(100 * S, 3699 * S, l, 0), (Due::Nothing, Some(S)));
        assert_eq!(due(100 * S, 3700 * S, l, 0).0, Due::Void);
        assert_eq!(due(100 * S, 99_999 * S, l, 0).0, Due::Void);
    }

    #[test]
    fn one_warning_per_multiple_and_none_again_after_it() {
        let l = limits(0, 600);
        assert_eq!(due(0, 599 * S, l, 0), (Due::Nothing, Some(S)));
        assert_eq!(due(0, 600 * S, l, 0), (Due::Warn { multiple: 1 }, Some(600 * S)));
        assert_eq!(due(0, 601 * S, l, 1), (Due::Nothing, Some(599 * S)));
        // A worker that was away for three multiples warns once, for the last.
        assert_eq!(due(0, 2400 * S, l, 1), (Due::Warn { multiple: 4 }, Some(600 * S)));
    }

    #[test]
    fn the_void_wins_over_a_warning_due_at_the_same_time() {
        let l = limits(1200, 600);
        assert_eq!(due(0, 1200 * S, l, 1).0, Due::Void);
        assert_eq!(due(0, 1100 * S, l, 1), (Due::Nothing, Some(100 * S)));
    }

    #[test]
    fn a_clock_that_went_back_is_an_age_of_nothing() {
        assert_eq!(due(100 * S, 50 * S, limits(60, 30), 0), (Due::Nothing, Some(80 * S)));
    }

    #[test]
    fn huge_limits_do_not_overflow() {
        let l = limits(u64::MAX, u64::MAX);
        let (what, next) = due(0, 10 * S, l, 0);
        assert_eq!(what, Due::Nothing);
        assert!(next.unwrap() > 0);
    }

    #[test]
    fn ages_and_limits_read_as_a_dba_writes_them() {
        assert_eq!(age_text(7200 * S), "2 h 00 min");
        assert_eq!(age_text(7325 * S), "2 h 02 min");
        assert_eq!(age_text(725 * S), "12 min 05 s");
        assert_eq!(age_text(40 * S + 999_999), "40 s");
        assert_eq!(limit_text(7200), "2h");
        assert_eq!(limit_text(5400), "90min");
        assert_eq!(limit_text(45), "45s");
    }
}
