//! Key formats (SPEC §2): `tr_<env>_<random>` secret keys, `pk_<env>_<random>`
//! publishable keys, random part from the OS CSPRNG over `[0-9a-zA-Z]`.

use std::fmt;
use std::str::FromStr;

/// The OS random source's error, re-exported so callers need no getrandom dependency.
pub type RandomError = getrandom::Error;

/// Length of the random part of generated keys and ids (the platform uses 24).
pub const RANDOM_LEN: usize = 24;

/// Longest credential we will even look at. Real keys are ~32 bytes; anything
/// much longer is garbage or an attack and is refused before touching an index.
pub const MAX_KEY_LEN: usize = 256;

const ALPHABET: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// The four environment types of SPEC §2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvironmentType {
    Development,
    Staging,
    Production,
    Preview,
}

impl EnvironmentType {
    pub const ALL: [EnvironmentType; 4] = [Self::Development, Self::Staging, Self::Production, Self::Preview];

    /// The spelling stored in `runtime_environment.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "DEVELOPMENT",
            Self::Staging => "STAGING",
            Self::Production => "PRODUCTION",
            Self::Preview => "PREVIEW",
        }
    }

    /// The `<env>` segment of keys, in the reference platform's spelling.
    pub fn key_segment(self) -> &'static str {
        match self {
            Self::Development => "dev",
            Self::Staging => "stg",
            Self::Production => "prod",
            Self::Preview => "preview",
        }
    }
}

impl fmt::Display for EnvironmentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EnvironmentType {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|t| t.as_str() == s).ok_or(())
    }
}

/// `len` characters of `[0-9a-zA-Z]` from the OS CSPRNG. Rejection sampling
/// keeps every character uniformly likely (no modulo bias).
pub fn random_alphanumeric(len: usize) -> Result<String, getrandom::Error> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf)?;
        for &b in &buf {
            // 248 = 4 * 62: bytes at or above it would bias the first characters.
            if b < 248 && out.len() < len {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}

/// A fresh secret key, e.g. `tr_prod_9fK...` (24 random characters).
pub fn generate_secret_key(env: EnvironmentType) -> Result<String, getrandom::Error> {
    Ok(format!("tr_{}_{}", env.key_segment(), random_alphanumeric(RANDOM_LEN)?))
}

/// A fresh publishable key, e.g. `pk_prod_...`.
pub fn generate_publishable_key(env: EnvironmentType) -> Result<String, getrandom::Error> {
    Ok(format!("pk_{}_{}", env.key_segment(), random_alphanumeric(RANDOM_LEN)?))
}

/// A fresh row id with a readable prefix (`env_…`, `rak_…`, `session_…`).
pub fn generate_id(prefix: &str) -> Result<String, getrandom::Error> {
    Ok(format!("{prefix}_{}", random_alphanumeric(RANDOM_LEN)?))
}

/// Length of a `tr_<env>_` / `pk_<env>_` prefix at the start of `key`, or 0.
fn key_prefix_len(key: &str) -> usize {
    let Some(rest) = key.strip_prefix("tr_").or_else(|| key.strip_prefix("pk_")) else { return 0 };
    EnvironmentType::ALL
        .iter()
        .find_map(|env| rest.strip_prefix(env.key_segment())?.strip_prefix('_'))
        .map_or(0, |random| key.len() - random.len())
}

/// What a DBA may see of a key: the prefix, the first two and last two random
/// characters (`tr_prod_ab…yz`). Short strings show only their prefix.
///
/// Only a known `tr_<env>_` / `pk_<env>_` prefix is shown whole; everything
/// after it counts as secret, `_` included, so a key with something glued on
/// (`tr_prod_<key>_x`) does not come out in clear. Found by `fuzz/` (`keys`).
pub fn mask(key: &str) -> String {
    let (prefix, random) = key.split_at(key_prefix_len(key));
    let chars: Vec<char> = random.chars().collect();
    if chars.len() < 12 {
        return format!("{prefix}…");
    }
    let head: String = chars[..2].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{prefix}{head}…{tail}")
}

/// How a bearer credential presents itself (SPEC §5, "Classifying a credential").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    /// `tr_…`: look it up as a secret key.
    SecretKey,
    /// `pk_…`: authorizes nothing on the API routes.
    PublishableKey,
    /// A JWT whose unverified payload says `pub: true`.
    PublicToken,
    /// Anything else: fails like an unknown secret key.
    Unknown,
}

pub fn classify(credential: &str) -> CredentialKind {
    if credential.starts_with("tr_") {
        CredentialKind::SecretKey
    } else if credential.starts_with("pk_") {
        CredentialKind::PublishableKey
    } else if crate::tokens::is_public_token_shape(credential) {
        CredentialKind::PublicToken
    } else {
        CredentialKind::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_spec_format() {
        for env in EnvironmentType::ALL {
            let sk = generate_secret_key(env).unwrap();
            let pk = generate_publishable_key(env).unwrap();
            let want = format!("tr_{}_", env.key_segment());
            assert!(sk.starts_with(&want), "{sk}");
            assert!(pk.starts_with(&format!("pk_{}_", env.key_segment())), "{pk}");
            let random = &sk[want.len()..];
            assert_eq!(random.len(), RANDOM_LEN);
            assert!(random.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        assert_ne!(
            generate_secret_key(EnvironmentType::Production).unwrap(),
            generate_secret_key(EnvironmentType::Production).unwrap()
        );
    }

    #[test]
    fn random_part_uses_the_whole_alphabet() {
        let s = random_alphanumeric(20_000).unwrap();
        for &c in ALPHABET {
            assert!(s.as_bytes().contains(&c), "never drew {}", c as char);
        }
    }

    #[test]
    fn environment_types_round_trip() {
        for env in EnvironmentType::ALL {
            assert_eq!(env.as_str().parse::<EnvironmentType>(), Ok(env));
        }
        assert!("production".parse::<EnvironmentType>().is_err());
    }

    #[test]
    fn mask_hides_the_middle() {
        assert_eq!(mask("tr_prod_abcdefghijklmnopqrstuvyz"), "tr_prod_ab…yz");
        assert_eq!(mask("tr_dev_short"), "tr_dev_…");
        assert_eq!(mask(""), "…");
        assert_eq!(mask("ünïcödé_ünïcödéünïcödé"), "ün…dé");
        assert_eq!(mask("pk_preview_0123456789abcdefABCDEFGH"), "pk_preview_01…GH");
    }

    #[test]
    fn mask_never_shows_a_key_glued_to_something() {
        // Fuzz finding (fuzz/fuzz_targets/keys.rs): the prefix used to run to the
        // last '_', so everything before it was shown in clear.
        let key = "tr_prod_abcdefghijklmnopqrstuvwx";
        assert_eq!(mask(&format!("{key}_branch")), "tr_prod_ab…ch");
        assert_eq!(mask(&format!("{key}_")), "tr_prod_ab…x_");
        assert_eq!(mask(&format!("{key} tr_dev_ABCDEFGHIJKLMNOPQRSTUVWX")), "tr_prod_ab…WX");
        assert_eq!(mask("tr_dev_trdevshorttr_dev_short"), "tr_dev_tr…rt");
        assert_eq!(mask("tr_qa_abcdefghijklmnopqrstuvwx"), "tr…wx");
        for s in [format!("{key}_x"), format!("x_{key}"), format!("{key}_"), "a_b_c_d_e_f_g_h".into()] {
            assert!(!mask(&s).contains("abcdefgh") && !mask(&s).contains("a_b_c"), "{s} -> {}", mask(&s));
        }
    }

    #[test]
    fn credentials_are_classified_like_the_platform() {
        assert_eq!(classify("tr_prod_x"), CredentialKind::SecretKey);
        assert_eq!(classify("pk_prod_x"), CredentialKind::PublishableKey);
        assert_eq!(classify("garbage"), CredentialKind::Unknown);
        assert_eq!(classify(""), CredentialKind::Unknown);
    }
}
