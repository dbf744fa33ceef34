//! `keys::mask` and `keys::classify` on arbitrary text.
//!
//! `mask` is what logs, views and the shim show of a credential, so: it never
//! panics, and whatever the input, it shows at most the recognised key prefix
//! (`tr_<env>_` / `pk_<env>_`, which carries no secret) plus 4 more characters
//! of the input. A key followed by junk (`tr_prod_<key>_x`, a trailing `_`, a
//! second key) must not come out in clear.
#![no_main]

use api_auth_core::keys::{classify, mask, CredentialKind, EnvironmentType};
use libfuzzer_sys::fuzz_target;

const ELLIPSIS: char = '…';

fn known_prefix(s: &str) -> &str {
    for kind in ["tr_", "pk_"] {
        for env in EnvironmentType::ALL {
            let p = format!("{kind}{}_", env.key_segment());
            if s.starts_with(&p) {
                return &s[..p.len()];
            }
        }
    }
    ""
}

fn check_mask(s: &str) {
    let m = mask(s);
    let prefix = known_prefix(s);
    let shown = m.strip_prefix(prefix).unwrap_or_else(|| panic!("mask({s:?}) = {m:?} lost the prefix {prefix:?}"));
    let revealed = shown.chars().filter(|&c| c != ELLIPSIS).count();
    assert!(revealed <= 4, "mask({s:?}) = {m:?} shows {revealed} characters beyond {prefix:?}");
    assert!(shown.contains(ELLIPSIS), "mask({s:?}) = {m:?} does not mark what it hid");
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    check_mask(s);
    let kind = classify(s);
    if s.starts_with("tr_") {
        assert_eq!(kind, CredentialKind::SecretKey);
    } else if s.starts_with("pk_") {
        assert_eq!(kind, CredentialKind::PublishableKey);
    }

    // The input as the random part of a real-looking key of every type.
    let random: String = s.chars().filter(char::is_ascii_alphanumeric).collect();
    for env in EnvironmentType::ALL {
        for kind in ["tr", "pk"] {
            let key = format!("{kind}_{}_{random}", env.key_segment());
            check_mask(&key);
            let m = mask(&key);
            if random.len() >= 12 {
                assert_eq!(m, format!("{kind}_{}_{}…{}", env.key_segment(), &random[..2], &random[random.len() - 2..]));
            }
            // The same key with the input glued on (a client that appends something).
            check_mask(&format!("{key}{s}"));
        }
    }
});
