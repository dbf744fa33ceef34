//! `expiration::resolve` (the mint route's `expirationTime`): never panics,
//! every accepted value lies in (now, now + MAX_LIFETIME_SECS], and the answer
//! (value or error kind) matches a restatement done in 128-bit arithmetic.
//!
//! Input is text: the spec (`"15m"`, `"1700000900"`, …), optionally followed by
//! a newline and a `now`; it is also resolved against a set of edge clocks.
#![no_main]

use api_auth_core::expiration::{check_window, resolve, ExpirationError, MAX_LIFETIME_SECS};
use libfuzzer_sys::fuzz_target;

const NOWS: [i64; 9] =
    [1_700_000_000, 0, 1, -1, 4_102_444_800, i64::MAX - MAX_LIFETIME_SECS, i64::MAX, i64::MIN, i64::MIN + MAX_LIFETIME_SECS];

fn unit(u: &str) -> Option<i128> {
    Some(match u {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        "y" | "yr" | "yrs" | "year" | "years" => 31_557_600,
        _ => return None,
    })
}

fn window(exp: i128, now: i64) -> Result<i64, ExpirationError> {
    let now = i128::from(now);
    if exp <= now {
        Err(ExpirationError::NotInFuture)
    } else if exp - now > i128::from(MAX_LIFETIME_SECS) || exp > i128::from(i64::MAX) {
        Err(ExpirationError::TooLong)
    } else {
        Ok(exp as i64)
    }
}

fn reference(spec: &str, now: i64) -> Result<i64, ExpirationError> {
    let spec = spec.trim();
    if spec.is_empty() || spec.len() > 64 {
        return Err(ExpirationError::Unparseable);
    }
    let digits = spec.len() - spec.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return Err(ExpirationError::Unparseable);
    }
    // Amounts and epochs are i64 in the API; more digits than that is unparseable.
    let amount: i64 = spec[..digits].parse().map_err(|_| ExpirationError::Unparseable)?;
    if digits == spec.len() {
        return window(i128::from(amount), now);
    }
    let per = unit(&spec[digits..].trim_start().to_ascii_lowercase()).ok_or(ExpirationError::Unparseable)?;
    let secs = i128::from(amount) * per;
    if secs > i128::from(i64::MAX) || i128::from(now) + secs > i128::from(i64::MAX) {
        return Err(ExpirationError::TooLong);
    }
    window(i128::from(now) + secs, now)
}

fn check(spec: &str, now: i64) {
    let got = resolve(spec, now);
    if let Ok(exp) = got {
        assert!(exp > now, "{spec:?} at {now} gave {exp}, not in the future");
        assert!(i128::from(exp) - i128::from(now) <= i128::from(MAX_LIFETIME_SECS), "{spec:?} at {now} gave {exp}");
    }
    assert_eq!(got, reference(spec, now), "{spec:?} at {now}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (spec, now) = match text.split_once('\n') {
        Some((spec, now)) => (spec, now.trim().parse::<i64>().ok()),
        None => (text, None),
    };
    for n in now.into_iter().chain(NOWS) {
        check(spec, n);
        check(text, n);
    }
    // check_window directly, with the clock and the expiry both taken from the input.
    if data.len() >= 16 {
        let exp = i64::from_le_bytes(data[..8].try_into().unwrap());
        let now = i64::from_le_bytes(data[8..16].try_into().unwrap());
        assert_eq!(check_window(exp, now), window(i128::from(exp), now), "check_window({exp}, {now})");
    }
});
