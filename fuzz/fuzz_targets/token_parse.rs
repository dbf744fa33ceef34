//! Arbitrary bytes through the public-token path: `parse`, `subject`,
//! `verify_signature`, `check_claims`, `is_public_token_shape` (against a
//! decode into a map), `classify`.
//! Nothing may panic, and what is accepted must be what SPEC §4 allows.
//!
//! Seeds (`corpus/token_parse/`) are real-looking tokens, several signed with
//! [`KEY`] so that the fuzzer starts beyond the signature check.
#![no_main]

use api_auth_core::keys::{classify, CredentialKind};
use api_auth_core::tokens::{
    fits_jsonb, is_public_token_shape, parse, ClaimPolicy, TokenError, DEFAULT_AUDIENCE, DEFAULT_ISSUER, MAX_SUBJECT_LEN,
    MAX_TOKEN_LEN,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The key the signed seeds were made with (`fuzz/make_seeds.py`).
const KEY: &[u8] = b"tr_dev_FuzzSeedKey0123456789abcd";
const OTHER: &[u8] = b"tr_dev_FuzzSeedKey0123456789abce";

/// Seed tokens carry iat 1700000000 and exp 1700000900.
const NOWS: [i64; 7] = [1_700_000_000, 1_700_000_899, 1_700_000_900, 0, -1, i64::MIN, i64::MAX];

fn decode_object(part: &str) -> Option<serde_json::Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };

    let shape = is_public_token_shape(s);
    // The shape check reads the payload without building it; it must answer
    // exactly as decoding the payload into a map would.
    let parts: Vec<&str> = s.split('.').collect();
    let by_map = s.len() <= MAX_TOKEN_LEN
        && parts.len() == 3
        && decode_object(parts[1]).is_some_and(|c| c.get("pub") == Some(&Value::Bool(true)));
    assert_eq!(shape, by_map, "is_public_token_shape({s:?})");
    let kind = classify(s);
    if s.starts_with("tr_") {
        assert_eq!(kind, CredentialKind::SecretKey);
    } else if s.starts_with("pk_") {
        assert_eq!(kind, CredentialKind::PublishableKey);
    } else {
        assert_eq!(kind == CredentialKind::PublicToken, shape);
    }

    let tok = match parse(s) {
        Ok(t) => t,
        Err(e) => {
            assert!(matches!(e, TokenError::Malformed | TokenError::InvalidAlgorithm), "{e:?}");
            return;
        }
    };

    // Accepted: exactly three parts, bounded, header says HS256 and nothing critical,
    // payload is the object we were given, signature is 32 bytes.
    assert!(!s.is_empty() && s.len() <= MAX_TOKEN_LEN);
    assert_eq!(parts.len(), 3);
    let header = decode_object(parts[0]).expect("accepted header decodes");
    assert_eq!(header.get("alg"), Some(&Value::String("HS256".into())));
    assert!(!header.contains_key("crit"));
    let claims = decode_object(parts[1]).expect("accepted payload decodes");
    assert_eq!(&claims, tok.claims());
    assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).map(|b| b.len()).ok(), Some(32));
    if claims.get("pub") == Some(&Value::Bool(true)) {
        assert!(shape, "a parsed token with pub: true must classify as a public token");
    }
    // What jsonb would store: a payload said to fit holds no U+0000 anywhere.
    if fits_jsonb(tok.payload_json()) {
        fn holds_nul(v: &Value) -> bool {
            match v {
                Value::String(s) => s.contains('\0'),
                Value::Array(a) => a.iter().any(holds_nul),
                Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
                _ => false,
            }
        }
        assert!(!claims.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)), "fits_jsonb let U+0000 through");
    }

    match tok.subject() {
        Ok(sub) => {
            assert!(!sub.is_empty() && sub.len() <= MAX_SUBJECT_LEN);
            assert_eq!(claims.get("sub").and_then(Value::as_str), Some(sub));
        }
        Err(e) => assert_eq!(e, TokenError::MissingSubject),
    }

    // A signature verifies only if it is, byte for byte, the HMAC we would write:
    // no alternative spellings of one signature (base64 malleability).
    let signing_input = &s[..s.rfind('.').unwrap()];
    for key in [KEY, OTHER, b"".as_slice()] {
        if tok.verify_signature(key) {
            let want =
                jsonwebtoken::crypto::sign(signing_input.as_bytes(), &EncodingKey::from_secret(key), Algorithm::HS256).unwrap();
            assert_eq!(want, parts[2], "a non-canonical signature verified");
        }
    }

    let strict = ClaimPolicy::default();
    let lenient = ClaimPolicy { leeway: 60, require_exp: false, ..ClaimPolicy::default() };
    let wild = ClaimPolicy { leeway: i64::MAX, require_exp: false, ..ClaimPolicy::default() };
    let neg = ClaimPolicy { leeway: i64::MIN, ..ClaimPolicy::default() };
    for now in NOWS {
        for policy in [&strict, &lenient, &wild, &neg] {
            let r = tok.check_claims(policy, now);
            if r.is_ok() {
                // What an accepted token must say, whatever the policy's clock.
                assert_eq!(claims.get("iss").and_then(Value::as_str), Some(DEFAULT_ISSUER));
                let aud_ok = match claims.get("aud") {
                    Some(Value::String(a)) => a == DEFAULT_AUDIENCE,
                    Some(Value::Array(l)) => l.iter().any(|a| a.as_str() == Some(DEFAULT_AUDIENCE)),
                    _ => false,
                };
                assert!(aud_ok);
                assert_eq!(claims.get("pub"), Some(&Value::Bool(true)));
                if let Some(sc) = claims.get("scopes") {
                    assert!(sc.as_array().is_some_and(|l| l.iter().all(Value::is_string)));
                }
                match claims.get("exp") {
                    None => assert!(!policy.require_exp),
                    Some(v) => assert!(v.is_number()),
                }
            }
        }
        // With no leeway, exp must lie strictly after now.
        if tok.check_claims(&strict, now).is_ok() {
            let exp = claims["exp"].as_f64().unwrap();
            assert!(exp > now as f64, "exp {exp} accepted at {now}");
        }
    }
});
