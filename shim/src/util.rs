//! Small helpers without a better home.

use std::borrow::Cow;

/// Percent-decode one path segment or query value (`%2F` → `/`). `None` if
/// an escape is broken or the result is not UTF-8: the `percent-encoding`
/// crate passes a broken escape through as text, and here that text would
/// name something else than the caller wrote, so it is refused first.
pub fn percent_decode(seg: &str) -> Option<String> {
    let escapes_ok =
        seg.split('%').skip(1).all(|after| after.as_bytes().get(..2).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)));
    if !escapes_ok {
        return None;
    }
    percent_encoding::percent_decode_str(seg).decode_utf8().ok().map(Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_segments() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("chat%3A1").as_deref(), Some("chat:1"));
        assert_eq!(percent_decode("%E2%82%ac").as_deref(), Some("€"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("a%"), None);
        assert_eq!(percent_decode("%%41"), None);
    }

    /// `u8::from_str_radix` takes a sign: the hand-written decoder read `%+1`
    /// as the byte 0x01.
    #[test]
    fn an_escape_is_two_hex_digits_and_nothing_else() {
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("a%-1b"), None);
        assert_eq!(percent_decode("% 1"), None);
    }
}
