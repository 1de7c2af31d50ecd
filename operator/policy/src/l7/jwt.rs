//! Bearer tokens: taken from `Authorization`, refused when oversized before
//! any parsing, verified against the step's keys with its algorithms only,
//! then issuer, audiences and lifetime checked against the time passed in.
//!
//! jsonwebtoken parses the header; the signature is checked with ring
//! (`keys::Key::verifies`); this module decides which key and which
//! algorithms may be used. `alg: none` does not parse, the API allows
//! asymmetric algorithms only, and a key verifies only tokens of its own
//! family, so an RSA public key is never taken for an HMAC secret.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::decode_header;
use serde_json::{Map, Value};

use super::{
    chain::{Jwks, Jwt, fits},
    keys::RemoteKeys,
    request::Request,
    verified::{self, VerifiedTokens},
};

/// Tokens longer than this are refused unread (a header of a few KiB is
/// already unusual; Envoy's default header limit is 60 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token longer than {MAX_TOKEN_BYTES} bytes")]
    Oversized,
    #[error("not a JWT: {0}")]
    Malformed(String),
    #[error("algorithm {0} is not allowed")]
    Algorithm(String),
    #[error("no key with kid {} for its algorithm", .kid.as_deref().unwrap_or("(none)"))]
    UnknownKid {
        kid: Option<String>,
        /// The remote JWKS that lacked it, for a refetch.
        uri: Option<String>,
    },
    #[error("signature does not verify")]
    Signature,
    #[error("issuer {} is not the expected one", .0.as_deref().unwrap_or("(none)"))]
    Issuer(Option<String>),
    #[error("audience does not match")]
    Audience,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    #[error("no exp claim")]
    NoExpiry,
    #[error("key set from {0} not available")]
    KeysUnavailable(String),
}

/// The token of `Authorization: Bearer <token>`, if any.
pub fn bearer(request: &Request) -> Option<&str> {
    let value = request.header("authorization")?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// The claims of a token that verifies. A token `verified` remembers for
/// the step's current key set skips the header and signature (and nothing
/// else: algorithms, issuer, audiences and lifetime are checked again);
/// one that verifies now is remembered until it expires.
pub fn verify(
    step: &Jwt,
    token: &str,
    now: Duration,
    remote: &dyn RemoteKeys,
    verified: &VerifiedTokens,
) -> Result<Map<String, Value>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Oversized);
    }
    if token.split('.').count() != 3 {
        return Err(TokenError::Malformed(
            "not three dot-separated parts".to_owned(),
        ));
    }
    // Resolved before the header is read so that a remembered token needs
    // no parsing; an unavailable set is reported after the algorithm check,
    // as for a token seen the first time.
    let keys = match &step.keys {
        Jwks::Local(keys) => Ok((keys.clone(), None)),
        Jwks::Remote(uri) => remote
            .get(uri)
            .map(|keys| (keys, Some(uri.clone())))
            .ok_or_else(|| TokenError::KeysUnavailable(uri.clone())),
    };
    let digest = verified::digest(token);
    if let Ok((keys, _)) = &keys
        && let Some(hit) = verified.get(keys, &digest)
        && step.algorithms.contains(&hit.alg)
    {
        check_claims(step, &hit.claims, now)?;
        return Ok(hit.claims);
    }
    let header = decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
    if !step.algorithms.contains(&header.alg) {
        return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
    }
    let (keys, uri) = keys?;
    let kid = header.kid.as_deref();
    // header.payload.signature: the signature covers the first two parts.
    let (message, signature) = token
        .rsplit_once('.')
        .ok_or_else(|| TokenError::Malformed("not three dot-separated parts".to_owned()))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|e| TokenError::Malformed(format!("signature: {e}")))?;
    let mut tried = false;
    let mut signed = false;
    for key in keys.candidates(kid).filter(|k| fits(k.family, header.alg)) {
        tried = true;
        if key.verifies(header.alg, message.as_bytes(), &signature) {
            signed = true;
            break;
        }
    }
    if !tried {
        return Err(TokenError::UnknownKid {
            kid: header.kid.clone(),
            uri,
        });
    }
    if !signed {
        return Err(TokenError::Signature);
    }
    // Read only once the signature holds: nothing unsigned is parsed further.
    let payload = message
        .split_once('.')
        .map(|(_, p)| p)
        .ok_or_else(|| TokenError::Malformed("not three dot-separated parts".to_owned()))?;
    let claims: Map<String, Value> = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| TokenError::Malformed("claims are not a JSON object".to_owned()))?;
    let exp = check_claims(step, &claims, now)?;
    verified.insert(
        &keys,
        digest,
        header.alg,
        &claims,
        exp.saturating_add(step.clock_skew),
        now,
    );
    Ok(claims)
}

/// Issuer, audiences and lifetime; the token's `exp` when they hold.
fn check_claims(step: &Jwt, claims: &Map<String, Value>, now: Duration) -> Result<u64, TokenError> {
    let issuer = claims.get("iss").and_then(Value::as_str);
    if issuer != Some(step.issuer.as_str()) {
        return Err(TokenError::Issuer(issuer.map(str::to_owned)));
    }
    if !step.audiences.is_empty() {
        let fits_one = |a: &Value| {
            a.as_str()
                .is_some_and(|a| step.audiences.iter().any(|w| w == a))
        };
        let ok = match claims.get("aud") {
            Some(Value::String(_)) => claims.get("aud").is_some_and(fits_one),
            Some(Value::Array(list)) => list.iter().any(fits_one),
            _ => false,
        };
        if !ok {
            return Err(TokenError::Audience);
        }
    }
    let now = now.as_secs();
    let time = |name: &str| -> Result<Option<u64>, TokenError> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .map(Some)
                .ok_or_else(|| TokenError::Malformed(format!("{name} is not a number"))),
        }
    };
    let exp = time("exp")?.ok_or(TokenError::NoExpiry)?;
    if exp.saturating_add(step.clock_skew) <= now {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = time("nbf")?
        && nbf > now.saturating_add(step.clock_skew)
    {
        return Err(TokenError::NotYetValid);
    }
    Ok(exp)
}
