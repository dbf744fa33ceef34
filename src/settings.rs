//! The `api_auth.*` settings (GUCs).
//!
//! The token validation policy (`jwt_issuer`, `jwt_audience`, `jwt_leeway`,
//! `jwt_require_exp`) is superuser-only (`PGC_SUSET`): set in
//! postgresql.conf, or with `ALTER DATABASE … SET` / `ALTER ROLE … SET` by a
//! superuser. Were it user-settable, any pooled client connection could
//! weaken validation for itself (`SET api_auth.jwt_leeway = 3600`).
//! `rotation_grace_period` and `audit_actor` stay settable per session: the
//! former only matters to admins who may rotate anyway, the latter is
//! informative (the audit trail's `database_user` is authoritative).

use std::ffi::CString;

use api_auth_core::tokens::{DEFAULT_AUDIENCE, DEFAULT_ISSUER};
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// Grace window given to the old key by `rotate_api_key` when no `grace` argument is passed.
pub static ROTATION_GRACE_PERIOD: GucSetting<i32> = GucSetting::<i32>::new(24 * 3600);
/// `iss` written into minted tokens and required of validated ones.
pub static JWT_ISSUER: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"https://id.trigger.dev"));
/// `aud` written into minted tokens and required of validated ones.
pub static JWT_AUDIENCE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"https://api.trigger.dev"));
/// Clock skew tolerated on `exp`/`nbf`, in seconds.
pub static JWT_LEEWAY: GucSetting<i32> = GucSetting::<i32>::new(0);
/// Refuse public tokens that carry no `exp` (the reference platform accepted them).
pub static JWT_REQUIRE_EXP: GucSetting<bool> = GucSetting::<bool>::new(true);

/// Who is acting, as the shim (or any client) declares it; recorded in
/// `api_auth.audit_event.actor` beside the authoritative database user.
pub static AUDIT_ACTOR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

pub fn init() {
    GucRegistry::define_string_guc(
        c"api_auth.audit_actor",
        c"Identity recorded as actor in api_auth.audit_event (the shim sets its admin identity).",
        c"Informative only: database_user is the authoritative identity. Set it per transaction with set_config(..., true).",
        &AUDIT_ACTOR,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"api_auth.rotation_grace_period",
        c"How long an old secret key keeps working after rotate_api_key (default 24h).",
        c"Used when rotate_api_key is called without a grace argument. Accepts units: '90min', '2h', '1d'.",
        &ROTATION_GRACE_PERIOD,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_string_guc(
        c"api_auth.jwt_issuer",
        c"Issuer (iss) of public access tokens.",
        c"Written by mint_public_jwt and required by validate_public_jwt.",
        &JWT_ISSUER,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"api_auth.jwt_audience",
        c"Audience (aud) of public access tokens.",
        c"Written by mint_public_jwt and required by validate_public_jwt.",
        &JWT_AUDIENCE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"api_auth.jwt_leeway",
        c"Clock skew, in seconds, tolerated when checking exp and nbf of public tokens.",
        c"",
        &JWT_LEEWAY,
        0,
        3600,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"api_auth.jwt_require_exp",
        c"Refuse public tokens without an exp claim.",
        c"",
        &JWT_REQUIRE_EXP,
        GucContext::Suset,
        GucFlags::default(),
    );
    // Typos such as `SET api_auth.grace = …` become errors instead of silent placeholders.
    crate::compat::reserve_setting_prefix();
}

fn string_setting(s: &GucSetting<Option<CString>>, default: &str) -> String {
    s.get().and_then(|c| c.into_string().ok()).unwrap_or_else(|| default.to_owned())
}

pub fn jwt_issuer() -> String {
    string_setting(&JWT_ISSUER, DEFAULT_ISSUER)
}

pub fn jwt_audience() -> String {
    string_setting(&JWT_AUDIENCE, DEFAULT_AUDIENCE)
}

pub fn jwt_leeway() -> i64 {
    JWT_LEEWAY.get().into()
}

pub fn jwt_require_exp() -> bool {
    JWT_REQUIRE_EXP.get()
}

pub fn rotation_grace_seconds() -> f64 {
    ROTATION_GRACE_PERIOD.get().into()
}
