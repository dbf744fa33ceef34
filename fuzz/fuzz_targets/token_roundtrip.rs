//! `mint` with arbitrary keys, subjects, scopes and extra claims: the token must
//! parse, carry our authority claims (not the caller's), verify with its key,
//! fail with any other key, and pass the claim checks while it is live.
#![no_main]

use api_auth_core::expiration::MAX_LIFETIME_SECS;
use api_auth_core::keys::{classify, CredentialKind};
use api_auth_core::scopes;
use api_auth_core::tokens::{self, ClaimPolicy, TokenError, DEFAULT_AUDIENCE, DEFAULT_ISSUER, MAX_SUBJECT_LEN, MAX_TOKEN_LEN};
use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Number, Value};

/// The extension's bound on caller claims (`MAX_CLAIMS_LEN` in src/tokens.rs,
/// which needs pgrx and so cannot be imported here).
const MAX_CLAIMS_LEN: usize = 4 * 1024;

/// A JSON value of bounded depth.
#[derive(Debug)]
struct Json(Value);

impl<'a> Arbitrary<'a> for Json {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        fn go(u: &mut Unstructured<'_>, depth: u8) -> arbitrary::Result<Value> {
            let max = if depth == 0 { 5 } else { 7 };
            Ok(match u.int_in_range(0..=max)? {
                0 => Value::Null,
                1 => Value::Bool(u.arbitrary()?),
                2 => Value::Number(i64::arbitrary(u)?.into()),
                3 => Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
                4 | 5 => Value::String(u.arbitrary()?),
                6 => Value::Array((0..u.int_in_range(0..=4)?).map(|_| go(u, depth - 1)).collect::<Result<_, _>>()?),
                _ => {
                    let mut m = Map::new();
                    for _ in 0..u.int_in_range(0..=4)? {
                        m.insert(u.arbitrary()?, go(u, depth - 1)?);
                    }
                    Value::Object(m)
                }
            })
        }
        Ok(Json(go(u, 3)?))
    }
}

/// Equal JSON, except that floats may move by an ulp or so: serde_json's default
/// float parser is fast rather than exact (its `float_roundtrip` feature is off).
/// Harmless for tokens: the claims that carry authority are integers we write.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= (4.0 * f64::EPSILON * x.abs().max(y.abs())).max(f64::MIN_POSITIVE)
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Real keys are `tr_<env>_<24 alnum>`, but `mint` takes any bytes.
    key: Vec<u8>,
    /// Which byte of the key to change for the wrong-key check, and to what.
    flip_at: u16,
    flip_with: u8,
    subject: String,
    scopes: Option<Vec<String>>,
    /// Caller claims, including attempts to override sub/pub/iss/aud/iat/exp.
    extra: Vec<(String, Json)>,
    iat: u32,
    lifetime: u32,
    elapsed: u32,
}

fuzz_target!(|input: Input| {
    let policy = ClaimPolicy::default();
    let iat = i64::from(input.iat);
    let lifetime = 1 + i64::from(input.lifetime) % MAX_LIFETIME_SECS;
    let exp = iat + lifetime;

    let mut extra = Map::new();
    for (k, Json(v)) in input.extra {
        extra.insert(k, v);
    }
    if let Some(scopes) = &input.scopes {
        extra.insert("scopes".into(), scopes.iter().cloned().map(Value::String).collect());
    }
    let caller_scopes = extra.get("scopes").cloned();
    // Minting writes only scopes of the grammar (an array of strings, each
    // `scopes::parse`-able): anything else is refused.
    let scopes_ok = match &caller_scopes {
        None | Some(Value::Null) => true,
        Some(Value::Array(l)) => l.iter().all(|v| v.as_str().is_some_and(|s| scopes::parse(s).is_some())),
        Some(_) => false,
    };

    let token = match tokens::mint(&input.key, &input.subject, extra.clone(), &policy, iat, exp) {
        Ok(t) => t,
        Err(e) => {
            assert!(!scopes_ok, "mint refused good input: {e}");
            return;
        }
    };
    assert!(scopes_ok, "mint accepted scopes that are not an array of scopes of the grammar");
    assert_eq!(classify(&token), CredentialKind::PublicToken);

    // `mint` itself does not bound the token; its callers bound the claims
    // (`mint_public_jwt` refuses claims over 4 KiB of JSON, `MAX_CLAIMS_LEN` in
    // src/tokens.rs) and env ids are short. Within those bounds, what is minted
    // must parse back.
    let claims_len = serde_json::to_vec(&extra).unwrap().len();
    if token.len() > MAX_TOKEN_LEN {
        assert!(
            claims_len > MAX_CLAIMS_LEN || input.subject.len() > MAX_SUBJECT_LEN,
            "{claims_len} bytes of claims made a {}-byte token, over MAX_TOKEN_LEN",
            token.len()
        );
        assert_eq!(tokens::parse(&token).err(), Some(TokenError::Malformed));
        return;
    }
    let parsed = tokens::parse(&token).unwrap_or_else(|e| panic!("minted token ({} bytes) does not parse: {e:?}", token.len()));
    let claims = parsed.claims();
    assert_eq!(claims["sub"], Value::String(input.subject.clone()));
    assert_eq!(claims["pub"], Value::Bool(true));
    assert_eq!(claims["iss"], DEFAULT_ISSUER);
    assert_eq!(claims["aud"], DEFAULT_AUDIENCE);
    assert_eq!(claims["iat"], iat);
    assert_eq!(claims["exp"], exp);
    match &caller_scopes {
        None | Some(Value::Null) => assert!(!claims.contains_key("scopes")),
        Some(s) => assert_eq!(&claims["scopes"], s),
    }
    for (k, v) in &extra {
        if !["sub", "pub", "iss", "aud", "iat", "exp", "scopes"].contains(&k.as_str()) {
            let got = claims.get(k).unwrap_or_else(|| panic!("extra claim {k:?} dropped"));
            assert!(same_json(got, v), "extra claim {k:?} changed: {v:?} -> {got:?}");
        }
    }
    match parsed.subject() {
        Ok(s) => assert_eq!(s, input.subject),
        Err(_) => assert!(input.subject.is_empty() || input.subject.len() > MAX_SUBJECT_LEN),
    }

    assert!(parsed.verify_signature(&input.key), "minted token does not verify with its key");
    // HMAC zero-pads keys shorter than a block, so "k" and "k\0" are one key;
    // changing a byte inside the key (or growing an empty one) always makes another.
    let mut other = input.key.clone();
    if other.is_empty() {
        other.push(input.flip_with | 1);
    } else {
        let i = usize::from(input.flip_at) % other.len();
        other[i] ^= input.flip_with.max(1);
    }
    assert!(!parsed.verify_signature(&other), "minted token verifies with another key");

    // Live from iat to just before exp, expired from exp on.
    let now = iat + i64::from(input.elapsed) % lifetime;
    let live = parsed.check_claims(&policy, now);
    match extra.get("nbf") {
        None => assert_eq!(live, Ok(()), "live token refused at {now}"),
        Some(_) => assert!(matches!(live, Ok(()) | Err(TokenError::ClaimInvalid))),
    }
    let dead = parsed.check_claims(&policy, exp);
    assert!(matches!(dead, Err(TokenError::Expired) | Err(TokenError::ClaimInvalid)), "{dead:?}");
    if !extra.contains_key("nbf") {
        assert_eq!(dead, Err(TokenError::Expired));
    }
});
