//! Token lifetimes as callers write them: a duration such as `"15m"`, `"1h"`,
//! `"2d"`, `"90 seconds"` (the forms jose's `setExpirationTime` accepts, which the
//! SDK passes through), or an absolute `exp` in epoch seconds.

/// Longest lifetime a token may be minted with. A public token cannot be
/// revoked except by expiring its signing key, so unbounded lifetimes are refused.
pub const MAX_LIFETIME_SECS: i64 = 366 * 24 * 3600;

#[derive(Debug, PartialEq, Eq)]
pub enum ExpirationError {
    /// Not a duration or epoch we understand.
    Unparseable,
    /// Zero, negative, or an absolute time not in the future.
    NotInFuture,
    /// Beyond [`MAX_LIFETIME_SECS`].
    TooLong,
}

impl std::fmt::Display for ExpirationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unparseable => "expiration must be a duration such as \"15m\", \"1h\", \"2d\" or absolute epoch seconds",
            Self::NotInFuture => "expiration must lie in the future",
            Self::TooLong => "expiration must be at most 366 days away",
        })
    }
}

/// Seconds per unit, for every spelling jose accepts.
fn unit_seconds(unit: &str) -> Option<i64> {
    Some(match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        "y" | "yr" | "yrs" | "year" | "years" => 31_557_600,
        _ => return None,
    })
}

/// Resolve `spec` to an absolute `exp` (epoch seconds), given the current time.
/// A bare integer is an absolute epoch, as in the SDK's `expirationTime: number`.
pub fn resolve(spec: &str, now: i64) -> Result<i64, ExpirationError> {
    let spec = spec.trim();
    if spec.is_empty() || spec.len() > 64 {
        return Err(ExpirationError::Unparseable);
    }
    let exp = if spec.bytes().all(|b| b.is_ascii_digit()) {
        spec.parse::<i64>().map_err(|_| ExpirationError::Unparseable)?
    } else {
        let digits = spec.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(ExpirationError::Unparseable);
        }
        let amount: i64 = spec[..digits].parse().map_err(|_| ExpirationError::Unparseable)?;
        let unit = spec[digits..].trim_start().to_ascii_lowercase();
        let per = unit_seconds(&unit).ok_or(ExpirationError::Unparseable)?;
        let secs = amount.checked_mul(per).ok_or(ExpirationError::TooLong)?;
        now.checked_add(secs).ok_or(ExpirationError::TooLong)?
    };
    check_window(exp, now)
}

/// Validate an absolute `exp` against now and the maximum lifetime.
pub fn check_window(exp: i64, now: i64) -> Result<i64, ExpirationError> {
    if exp <= now {
        Err(ExpirationError::NotInFuture)
    } else if exp.checked_sub(now).is_none_or(|d| d > MAX_LIFETIME_SECS) {
        // (checked: with a clock before 1970 the distance can exceed i64; fuzz finding)
        Err(ExpirationError::TooLong)
    } else {
        Ok(exp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const NOW: i64 = 1_700_000_000;

    #[test]
    fn durations() {
        assert_eq!(resolve("15m", NOW), Ok(NOW + 900));
        assert_eq!(resolve("1h", NOW), Ok(NOW + 3600));
        assert_eq!(resolve("2d", NOW), Ok(NOW + 172_800));
        assert_eq!(resolve("90 seconds", NOW), Ok(NOW + 90));
        assert_eq!(resolve(" 1 Hour ", NOW), Ok(NOW + 3600));
        assert_eq!(resolve("1w", NOW), Ok(NOW + 604_800));
    }

    #[test]
    fn absolute_epochs() {
        assert_eq!(resolve(&(NOW + 60).to_string(), NOW), Ok(NOW + 60));
        assert_eq!(resolve(&(NOW - 1).to_string(), NOW), Err(ExpirationError::NotInFuture));
    }

    #[test]
    fn garbage_is_refused() {
        for bad in ["", "h", "1x", "-1h", "1.5h", "1h30m", "ten minutes", "99999999999999999999"] {
            assert!(resolve(bad, NOW).is_err(), "{bad:?} accepted");
        }
        assert_eq!(resolve("0s", NOW), Err(ExpirationError::NotInFuture));
        assert_eq!(resolve("2y", NOW), Err(ExpirationError::TooLong));
        assert_eq!(resolve("9223372036854775807d", NOW), Err(ExpirationError::TooLong));
    }

    #[test]
    fn far_apart_times_do_not_overflow() {
        // Fuzz finding (fuzz/fuzz_targets/expiration.rs): `exp - now` overflowed.
        assert_eq!(resolve("1700000900", i64::MIN), Err(ExpirationError::TooLong));
        assert_eq!(check_window(i64::MAX, -1), Err(ExpirationError::TooLong));
        assert_eq!(check_window(i64::MIN + 1, i64::MIN), Ok(i64::MIN + 1));
    }
}
