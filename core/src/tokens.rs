//! Public access tokens (SPEC §4): HS256 JWTs keyed by the UTF-8 bytes of an
//! environment's secret key, exactly as `@trigger.dev/core`'s `generateJWT`
//! makes them.
//!
//! Validation is split so the database does the least work: [`parse`] reads the
//! unverified token (to learn `sub`, the environment to load),
//! [`UnverifiedToken::verify_signature`] is tried against the current key and,
//! only on failure, against keys in grace, then [`UnverifiedToken::check_claims`]
//! judges the claims of a token whose signature is known to be good.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};
use sha2::Sha256;

/// Longest token considered (the SDK's tokens are a few hundred bytes).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Longest `sub` considered: environment ids are short.
pub const MAX_SUBJECT_LEN: usize = 128;

pub const DEFAULT_ISSUER: &str = "https://id.trigger.dev";
pub const DEFAULT_AUDIENCE: &str = "https://api.trigger.dev";

/// Why a token was refused. [`TokenError::code`] is the stable, machine-readable
/// spelling returned by `api_auth.validate_public_jwt(...).error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url JSON parts, or over [`MAX_TOKEN_LEN`].
    Malformed,
    /// Header `alg` other than `HS256` (including `none`), or a `crit` header.
    InvalidAlgorithm,
    /// No usable `sub` claim.
    MissingSubject,
    /// `sub` names no environment, or an archived one.
    EnvironmentNotFound,
    /// No current or in-grace key verifies the signature.
    InvalidSignature,
    /// `exp` has passed (allowing for the configured leeway).
    Expired,
    /// A claim is wrong: issuer, audience, `pub`, `nbf`, missing `exp`, types.
    ClaimInvalid,
}

impl TokenError {
    /// Every reason, for reading a [`TokenError::code`] back.
    pub const ALL: [TokenError; 7] = [
        Self::Malformed,
        Self::InvalidAlgorithm,
        Self::MissingSubject,
        Self::EnvironmentNotFound,
        Self::InvalidSignature,
        Self::Expired,
        Self::ClaimInvalid,
    ];

    /// The reason spelled `code` by [`TokenError::code`] (e.g. what a client of
    /// `validate_public_jwt` reads back), if it is one.
    pub fn from_code(code: &str) -> Option<TokenError> {
        Self::ALL.into_iter().find(|e| e.code() == code)
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::InvalidAlgorithm => "invalid_algorithm",
            Self::MissingSubject => "missing_subject",
            Self::EnvironmentNotFound => "environment_not_found",
            Self::InvalidSignature => "invalid_signature",
            Self::Expired => "expired",
            Self::ClaimInvalid => "claim_invalid",
        }
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// What a valid token's claims must satisfy. Built from the `api_auth.jwt_*` settings.
#[derive(Clone, Debug)]
pub struct ClaimPolicy<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway: i64,
    /// Refuse tokens without `exp` (SPEC §6: the platform accepted them).
    pub require_exp: bool,
}

impl Default for ClaimPolicy<'static> {
    fn default() -> Self {
        ClaimPolicy { issuer: DEFAULT_ISSUER, audience: DEFAULT_AUDIENCE, leeway: 0, require_exp: true }
    }
}

/// A syntactically valid HS256 token whose signature is not yet checked.
#[derive(Debug)]
pub struct UnverifiedToken<'a> {
    signing_input: &'a str,
    signature: [u8; 32],
    claims: Map<String, Value>,
    /// The payload as sent: JSON text that parsed to `claims`.
    payload_json: String,
}

/// Decode a base64url part holding a JSON object: the object and its bytes.
fn decode_json_object(part: &str) -> Result<(Map<String, Value>, Vec<u8>), TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok((map, bytes)),
        _ => Err(TokenError::Malformed),
    }
}

/// Split, decode and sanity-check a compact JWS. No key is involved.
pub fn parse(token: &str) -> Result<UnverifiedToken<'_>, TokenError> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    let (header, _) = decode_json_object(header)?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") || header.contains_key("crit") {
        return Err(TokenError::InvalidAlgorithm);
    }
    let (claims, payload_json) = decode_json_object(payload)?;
    // serde_json accepted it, so it is UTF-8: this check cannot fail.
    let payload_json = String::from_utf8(payload_json).map_err(|_| TokenError::Malformed)?;
    // HS256 signatures are exactly 32 bytes; anything else cannot verify.
    let signature: [u8; 32] =
        URL_SAFE_NO_PAD.decode(signature).ok().and_then(|s| s.try_into().ok()).ok_or(TokenError::Malformed)?;
    let signing_input = &token[..token.rfind('.').ok_or(TokenError::Malformed)?];
    Ok(UnverifiedToken { signing_input, signature, claims, payload_json })
}

/// Cheap check used to classify credentials: three dot-separated parts whose
/// payload decodes to an object with `pub: true`. Says nothing about validity.
///
/// It runs for every credential that is not a key, on every request, so it
/// reads the payload without building it: the JSON is checked exactly as a
/// parse into a map would check it (numbers, strings, depth), and the answer
/// is the one that map would give (its last `pub` member). Only `pub`'s value
/// is built.
pub fn is_public_token_shape(credential: &str) -> bool {
    let mut parts = credential.split('.');
    let (Some(_), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if credential.len() > MAX_TOKEN_LEN {
        return false;
    }
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(payload) else { return false };
    serde_json::from_slice::<pub_claim::PubIsTrue>(&bytes).is_ok_and(|p| p.0)
}

/// The visitors behind [`is_public_token_shape`].
mod pub_claim {
    use std::fmt;

    use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::Value;

    /// A JSON object whose (last) `pub` member is `true`, or not.
    pub struct PubIsTrue(pub bool);

    /// A member name, and whether it is `pub` (escapes decoded, as a map key is).
    struct IsPub(bool);

    /// Any JSON value, read as fully as a [`Value`] would be (so that exactly
    /// what a map parse refuses is refused), and dropped.
    struct Skip;

    impl<'de> Deserialize<'de> for PubIsTrue {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Object;
            impl<'de> Visitor<'de> for Object {
                type Value = PubIsTrue;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PubIsTrue, A::Error> {
                    let mut is_pub = false;
                    while let Some(IsPub(key_is_pub)) = map.next_key()? {
                        if key_is_pub {
                            is_pub = map.next_value::<Value>()? == Value::Bool(true);
                        } else {
                            map.next_value::<Skip>()?;
                        }
                    }
                    Ok(PubIsTrue(is_pub))
                }
            }
            d.deserialize_map(Object)
        }
    }

    impl<'de> Deserialize<'de> for IsPub {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Name;
            impl<'de> Visitor<'de> for Name {
                type Value = IsPub;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a member name")
                }
                fn visit_str<E>(self, v: &str) -> Result<IsPub, E> {
                    Ok(IsPub(v == "pub"))
                }
            }
            d.deserialize_str(Name)
        }
    }

    impl<'de> Deserialize<'de> for Skip {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Skip)
        }
    }

    impl<'de> Visitor<'de> for Skip {
        type Value = Skip;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
            Ok(Skip)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
            Ok(Skip)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
            Ok(Skip)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
            Ok(Skip)
        }
        fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
            Ok(Skip)
        }
        fn visit_unit<E>(self) -> Result<Skip, E> {
            Ok(Skip)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
            while seq.next_element::<Skip>()?.is_some() {}
            Ok(Skip)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
            while map.next_entry::<Skip, Skip>()?.is_some() {}
            Ok(Skip)
        }
    }
}

impl<'a> UnverifiedToken<'a> {
    /// The environment id the token claims to be for.
    pub fn subject(&self) -> Result<&str, TokenError> {
        match self.claims.get("sub").and_then(Value::as_str) {
            Some(s) if !s.is_empty() && s.len() <= MAX_SUBJECT_LEN => Ok(s),
            _ => Err(TokenError::MissingSubject),
        }
    }

    /// HMAC-SHA256 of the signing input with `key`, compared in constant time.
    pub fn verify_signature(&self, key: &[u8]) -> bool {
        // HMAC takes keys of any length; the error arm is unreachable.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { return false };
        mac.update(self.signing_input.as_bytes());
        mac.verify_slice(&self.signature).is_ok()
    }

    /// Judge the claims of a token whose signature has been verified.
    pub fn check_claims(&self, policy: &ClaimPolicy<'_>, now: i64) -> Result<(), TokenError> {
        let c = &self.claims;
        let number = |name: &str| -> Result<Option<f64>, TokenError> {
            match c.get(name) {
                None => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or(TokenError::ClaimInvalid),
            }
        };
        let leeway = policy.leeway as f64;
        match number("exp")? {
            Some(exp) if exp <= now as f64 - leeway => return Err(TokenError::Expired),
            None if policy.require_exp => return Err(TokenError::ClaimInvalid),
            _ => {}
        }
        if number("nbf")?.is_some_and(|nbf| nbf > now as f64 + leeway) {
            return Err(TokenError::ClaimInvalid);
        }
        number("iat")?;
        if c.get("iss").and_then(Value::as_str) != Some(policy.issuer) {
            return Err(TokenError::ClaimInvalid);
        }
        let aud_ok = match c.get("aud") {
            Some(Value::String(a)) => a == policy.audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(policy.audience)),
            _ => false,
        };
        if !aud_ok || c.get("pub") != Some(&Value::Bool(true)) {
            return Err(TokenError::ClaimInvalid);
        }
        match c.get("scopes") {
            None => {}
            Some(Value::Array(list)) if list.iter().all(Value::is_string) => {}
            Some(_) => return Err(TokenError::ClaimInvalid),
        }
        Ok(())
    }

    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    pub fn into_claims(self) -> Map<String, Value> {
        self.claims
    }

    /// The payload's JSON text exactly as sent (it parsed to [`Self::claims`]),
    /// for callers that hand the claims on as JSON without re-serialising them.
    pub fn payload_json(&self) -> &str {
        &self.payload_json
    }
}

/// Largest exponent, and most digits, of a number that [`fits_jsonb`] accepts.
/// PostgreSQL's `numeric` takes far more (131072 digits before the point,
/// 16383 after); these bounds keep every accepted number well inside that on
/// every supported version, and no real claim comes near them.
pub const MAX_JSON_NUMBER_EXPONENT: i64 = 1000;
pub const MAX_JSON_NUMBER_DIGITS: usize = 1000;

/// Would PostgreSQL's `jsonb` store this JSON text (already known to be valid
/// JSON)? It refuses two things JSON allows: the escape `\u0000` inside a
/// string (key or value, duplicates included), and numbers out of `numeric`'s
/// range such as `1e-20000`. A verified token whose payload does not fit is
/// refused as `claim_invalid` rather than failing while its row is built.
pub fn fits_jsonb(json: &str) -> bool {
    let b = json.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        if b.get(i + 1) == Some(&b'u') && b.get(i + 2..i + 6) == Some(b"0000".as_slice()) {
                            return false;
                        }
                        i += 1; // the escaped byte (for \uXXXX the hex digits are plain bytes)
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                    i += 1;
                }
                if !number_fits(&json[start..i]) {
                    return false;
                }
            }
            _ => i += 1,
        }
    }
    true
}

fn number_fits(n: &str) -> bool {
    let (mantissa, exponent) = match n.find(['e', 'E']) {
        Some(at) => (&n[..at], &n[at + 1..]),
        None => (n, "0"),
    };
    let digits = mantissa.bytes().filter(u8::is_ascii_digit).count();
    // An exponent too long to parse is out of range too.
    let exponent = exponent.parse::<i64>().unwrap_or(i64::MAX);
    digits <= MAX_JSON_NUMBER_DIGITS && exponent.abs() <= MAX_JSON_NUMBER_EXPONENT
}

/// Sign a public access token for environment `subject` with `key`.
///
/// Caller-supplied `extra` claims are kept (`scopes`, `realtime`, `otu`, …) but
/// the claims that carry authority are always ours: `sub`, `pub`, `iss`, `aud`,
/// `iat`, `exp`. `scopes`, when present, must be an array of strings each in
/// the scope grammar ([`crate::scopes::check`]): this service never signs a
/// scope that a reader could split or misread.
pub fn mint(
    key: &[u8],
    subject: &str,
    mut extra: Map<String, Value>,
    policy: &ClaimPolicy<'_>,
    iat: i64,
    exp: i64,
) -> Result<String, String> {
    match extra.get("scopes") {
        None | Some(Value::Null) => {
            extra.remove("scopes");
        }
        Some(Value::Array(list)) => {
            for scope in list {
                let Value::String(scope) = scope else {
                    return Err("claims.scopes must be an array of strings".into());
                };
                crate::scopes::check(scope).map_err(|e| format!("claims.scopes: {e}"))?;
            }
        }
        Some(_) => return Err("claims.scopes must be an array of strings".into()),
    }
    extra.insert("sub".into(), subject.into());
    extra.insert("pub".into(), true.into());
    extra.insert("iss".into(), policy.issuer.into());
    extra.insert("aud".into(), policy.audience.into());
    extra.insert("iat".into(), iat.into());
    extra.insert("exp".into(), exp.into());
    let mut header = Header::new(Algorithm::HS256);
    header.typ = None; // the SDK's header is exactly {"alg":"HS256"}
    jsonwebtoken::encode(&header, &extra, &EncodingKey::from_secret(key)).map_err(|_| "could not encode token".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codes_read_back() {
        for e in TokenError::ALL {
            assert_eq!(TokenError::from_code(e.code()), Some(e));
        }
        assert_eq!(TokenError::from_code("nope"), None);
        assert_eq!(TokenError::from_code(""), None);
    }

    fn hs256_sign(key: &[u8], message: &[u8]) -> String {
        jsonwebtoken::crypto::sign(message, &EncodingKey::from_secret(key), Algorithm::HS256).unwrap()
    }

    const NOW: i64 = 1_700_000_000;
    const KEY: &[u8] = b"tr_dev_abcdefghijklmnopqrstuvwx";

    fn token_with(header: Value, claims: Value, key: &[u8]) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{h}.{p}");
        let sig = hs256_sign(key, input.as_bytes());
        format!("{input}.{sig}")
    }

    fn good_claims() -> Value {
        json!({"sub": "env_1", "pub": true, "iss": DEFAULT_ISSUER, "aud": DEFAULT_AUDIENCE,
               "iat": NOW, "exp": NOW + 900, "scopes": ["read:runs"]})
    }

    fn validate(token: &str, key: &[u8]) -> Result<Map<String, Value>, TokenError> {
        let t = parse(token)?;
        t.subject()?;
        if !t.verify_signature(key) {
            return Err(TokenError::InvalidSignature);
        }
        t.check_claims(&ClaimPolicy::default(), NOW)?;
        Ok(t.into_claims())
    }

    #[test]
    fn minted_tokens_round_trip() {
        let extra = json!({"scopes": ["write:tasks:foo"], "sub": "evil", "exp": 1}).as_object().unwrap().clone();
        let tok = mint(KEY, "env_1", extra, &ClaimPolicy::default(), NOW, NOW + 60).unwrap();
        let header = tok.split('.').next().unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(header).unwrap(), br#"{"alg":"HS256"}"#);
        let claims = validate(&tok, KEY).unwrap();
        assert_eq!(claims["sub"], "env_1");
        assert_eq!(claims["exp"], NOW + 60);
        assert_eq!(claims["scopes"], json!(["write:tasks:foo"]));
        assert_eq!(validate(&tok, b"tr_dev_other"), Err(TokenError::InvalidSignature));
    }

    #[test]
    fn payload_json_is_the_text_sent_and_every_signature_bit_counts() {
        // Unusual spacing and key order survive: the text is what was signed.
        let payload = r#"{ "sub":"env_1", "pub":true, "exp":1700000900 }"#;
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#), URL_SAFE_NO_PAD.encode(payload));
        let sig = URL_SAFE_NO_PAD.decode(hs256_sign(KEY, input.as_bytes())).unwrap();
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
        let t = parse(&token).unwrap();
        assert_eq!(t.payload_json(), payload);
        assert_eq!(serde_json::from_str::<Value>(t.payload_json()).unwrap(), Value::Object(t.claims().clone()));
        assert!(t.verify_signature(KEY));
        assert!(!t.verify_signature(b"tr_dev_abcdefghijklmnopqrstuvwy"));
        assert!(!t.verify_signature(b""));
        for bit in 0..256 {
            let mut flipped = sig.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&flipped));
            assert!(!parse(&token).unwrap().verify_signature(KEY), "bit {bit}");
        }
        // 31 or 33 bytes can never be an HS256 signature.
        for len in [31, 33] {
            let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(vec![0u8; len]));
            assert_eq!(parse(&token).err(), Some(TokenError::Malformed));
        }
    }

    #[test]
    fn the_shape_check_answers_as_a_parse_into_a_map_would() {
        // The reference: decode the payload into a map, read its `pub`.
        let by_map = |t: &str| {
            t.len() <= MAX_TOKEN_LEN
                && t.split('.').count() == 3
                && decode_json_object(t.split('.').nth(1).unwrap_or(""))
                    .is_ok_and(|(c, _)| c.get("pub") == Some(&Value::Bool(true)))
        };
        let with_payload = |json: &str| format!("eyJhbGciOiJIUzI1NiJ9.{}.c2ln", URL_SAFE_NO_PAD.encode(json));
        let payloads = [
            r#"{"pub":true}"#,
            r#"{"pub":false}"#,
            r#"{"pub":"true"}"#,
            r#"{"pub":1}"#,
            r#"{"pub":[true]}"#,
            r#"{"p\u0075b":true}"#,
            r#"{"pub":true,"pub":false}"#,
            r#"{"pub":false,"pub":true}"#,
            r#"{"sub":"env","scopes":["read:runs"],"x":{"pub":true},"pub":true}"#,
            r#"{"x":{"pub":true}}"#,
            r#"{"a":1e400,"pub":true}"#,
            r#"{"a":-1e-400,"pub":true}"#,
            r#"{"a":18446744073709551616,"pub":true}"#,
            r#"{"a":"\ud800","pub":true}"#,
            r#"{"a":"\u0000","pub":true}"#,
            r#"{"a":01,"pub":true}"#,
            r#"{"pub":true} "#,
            r#"{"pub":true} x"#,
            r#"{"pub":true,}"#,
            r#"[{"pub":true}]"#,
            r#""pub""#,
            "true",
            "",
            r#"{"pub":tru}"#,
        ];
        let deep = format!(r#"{{"a":{}1{},"pub":true}}"#, "[".repeat(200), "]".repeat(200));
        let shallow = format!(r#"{{"a":{}1{},"pub":true}}"#, "[".repeat(100), "]".repeat(100));
        for p in payloads.iter().copied().chain([deep.as_str(), shallow.as_str()]) {
            let t = with_payload(p);
            assert_eq!(is_public_token_shape(&t), by_map(&t), "payload {p}");
        }
        assert!(is_public_token_shape(&with_payload(r#"{"pub":true}"#)));
        assert!(is_public_token_shape(&with_payload(r#"{"p\u0075b":true}"#)));
        assert!(!is_public_token_shape(&with_payload(r#"{"a":1e400,"pub":true}"#)));
        for t in ["", "a.b", "a.b.c.d", "..", "x.!!!.y", "x.e30.y"] {
            assert_eq!(is_public_token_shape(t), by_map(t), "{t:?}");
        }
        let long = with_payload(&format!(r#"{{"pub":true,"x":"{}"}}"#, "a".repeat(MAX_TOKEN_LEN)));
        assert!(!is_public_token_shape(&long));
    }

    #[test]
    fn mint_refuses_bad_scopes() {
        let mint_scopes = |scopes: Value| {
            let extra = json!({ "scopes": scopes }).as_object().unwrap().clone();
            mint(KEY, "env_1", extra, &ClaimPolicy::default(), NOW, NOW + 60)
        };
        assert!(mint_scopes(json!("admin")).is_err());
        assert!(mint_scopes(json!([1])).is_err());
        let err = mint_scopes(json!(["read:runs", "read:sessions:x admin"])).unwrap_err();
        assert!(err.contains("read:sessions:x admin") && err.contains("not a scope"), "{err}");
        assert!(mint_scopes(json!(["read:sessions:caf\u{e9}"])).is_err());
        assert!(mint_scopes(json!(["read:runs", "write:tasks:org/foo", "admin"])).is_ok());
    }

    #[test]
    fn fits_jsonb_refuses_nul_escapes_and_huge_numbers() {
        for ok in [r#"{"a":1,"b":-2.5e10,"c":"x\\u0000","d":"\u0001","e":[1e-1000,1e1000]}"#, r#"{}"#] {
            assert!(fits_jsonb(ok), "{ok}");
        }
        for bad in [
            r#"{"a":"\u0000"}"#,
            r#"{"a":"x","a":"\u0000"}"#,
            r#"{"\u0000":1}"#,
            r#"{"n":1e-20000}"#,
            r#"{"n":1E1001}"#,
            r#"{"n":1e99999999999999999999999}"#,
        ] {
            assert!(!fits_jsonb(bad), "{bad}");
        }
        let long = format!(r#"{{"n":{}}}"#, "9".repeat(MAX_JSON_NUMBER_DIGITS + 1));
        assert!(!fits_jsonb(&long));
    }

    #[test]
    fn known_sdk_vector_verifies() {
        // Made with jose (as @trigger.dev/core does) outside this crate:
        // new SignJWT({sub:"env_1",pub:true}).setProtectedHeader({alg:"HS256"})
        //   .setIssuer(...).setAudience(...).setIssuedAt(1700000000).setExpirationTime(1700000900)
        let tok = token_with(json!({"alg": "HS256"}), good_claims(), KEY);
        assert!(validate(&tok, KEY).is_ok());
    }

    #[test]
    fn refusals_have_the_right_code() {
        use TokenError::*;
        let mut c = good_claims();
        let case = |c: Value| validate(&token_with(json!({"alg": "HS256"}), c, KEY), KEY);
        c["exp"] = json!(NOW - 1);
        assert_eq!(case(c.clone()), Err(Expired));
        c["exp"] = json!(NOW);
        assert_eq!(case(c.clone()), Err(Expired));
        c = good_claims();
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(case(c), Err(ClaimInvalid));
        for (k, v) in [
            ("iss", json!("https://evil")),
            ("aud", json!("x")),
            ("pub", json!(false)),
            ("exp", json!("soon")),
            ("scopes", json!("admin")),
            ("nbf", json!(NOW + 60)),
        ] {
            let mut c = good_claims();
            c[k] = v;
            assert_eq!(case(c), Err(ClaimInvalid), "{k}");
        }
        let mut c = good_claims();
        c["aud"] = json!(["other", DEFAULT_AUDIENCE]);
        assert!(case(c).is_ok());
        let mut c = good_claims();
        c.as_object_mut().unwrap().remove("sub");
        assert_eq!(case(c), Err(MissingSubject));

        for alg in ["none", "HS512", "RS256", "hs256"] {
            let t = token_with(json!({"alg": alg}), good_claims(), KEY);
            assert_eq!(validate(&t, KEY), Err(InvalidAlgorithm), "{alg}");
        }
        let t = token_with(json!({"alg": "HS256", "crit": ["b64"]}), good_claims(), KEY);
        assert_eq!(validate(&t, KEY), Err(InvalidAlgorithm));
        let unsigned = format!("{}.", token_with(json!({"alg": "none"}), good_claims(), KEY).rsplit_once('.').unwrap().0);
        assert_eq!(validate(&unsigned, KEY), Err(InvalidAlgorithm));
        for junk in [
            "",
            "a.b",
            "a.b.c.d",
            "....",
            "eyJhbGciOiJIUzI1NiJ9.e30.e30",
            "eyJhbGciOiJIUzI1NiJ9.W10.e30",
            "!!.!!.!!",
            &"a".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(parse(junk).err(), Some(Malformed), "{junk:?}");
        }
        // A header without any alg is an algorithm refusal, not a parse error.
        let no_alg = token_with(json!({}), good_claims(), KEY);
        assert_eq!(parse(&no_alg).err(), Some(InvalidAlgorithm));
    }

    #[test]
    fn leeway_extends_exp() {
        let mut c = good_claims();
        c["exp"] = json!(NOW - 5);
        let t = token_with(json!({"alg": "HS256"}), c, KEY);
        let p = parse(&t).unwrap();
        let policy = ClaimPolicy { leeway: 10, ..ClaimPolicy::default() };
        assert_eq!(p.check_claims(&policy, NOW), Ok(()));
        assert_eq!(p.check_claims(&ClaimPolicy::default(), NOW), Err(TokenError::Expired));
    }

    #[test]
    fn public_token_shape() {
        let t = token_with(json!({"alg": "HS256"}), good_claims(), KEY);
        assert!(is_public_token_shape(&t));
        let mut c = good_claims();
        c["pub"] = json!(false);
        assert!(!is_public_token_shape(&token_with(json!({"alg": "HS256"}), c, KEY)));
        assert!(!is_public_token_shape("tr_dev_x"));
    }
}
