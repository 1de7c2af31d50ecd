//! JSON Web Key Sets, parsed once: the keys a `jwt` step verifies with.
//! A set is never empty: an empty or unreadable document is an error, so a
//! caller keeps the set it had (the contract: a JWKS is never cached empty).

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet},
};
use ring::signature::{self as s, RsaPublicKeyComponents, UnparsedPublicKey};

/// The family of algorithms a key can verify: a token's `alg` must belong
/// to its key's, so an RSA key is never used as an HMAC secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

pub struct Key {
    pub kid: Option<String>,
    pub family: KeyFamily,
    public: Public,
}

/// The public key as ring verifies with it. Signatures are checked with
/// ring rather than through jsonwebtoken's `rust_crypto` backend: RS256
/// took 300 µs there, the whole budget of a request many times over
/// (docs/benchmarks.md).
enum Public {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point: 0x04 ‖ x ‖ y.
    Ec(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl Key {
    /// Whether `signature` signs `message` with this key under `alg`; an
    /// algorithm outside the key's family never verifies.
    pub fn verifies(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        let rsa: Option<&'static s::RsaParameters> = match alg {
            Algorithm::RS256 => Some(&s::RSA_PKCS1_2048_8192_SHA256),
            Algorithm::RS384 => Some(&s::RSA_PKCS1_2048_8192_SHA384),
            Algorithm::RS512 => Some(&s::RSA_PKCS1_2048_8192_SHA512),
            Algorithm::PS256 => Some(&s::RSA_PSS_2048_8192_SHA256),
            Algorithm::PS384 => Some(&s::RSA_PSS_2048_8192_SHA384),
            Algorithm::PS512 => Some(&s::RSA_PSS_2048_8192_SHA512),
            _ => None,
        };
        match (&self.public, rsa, alg) {
            (Public::Rsa { n, e }, Some(params), _) => RsaPublicKeyComponents { n, e }
                .verify(params, message, signature)
                .is_ok(),
            (Public::Ec(point), None, Algorithm::ES256) if self.family == KeyFamily::EcP256 => {
                UnparsedPublicKey::new(&s::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            (Public::Ec(point), None, Algorithm::ES384) if self.family == KeyFamily::EcP384 => {
                UnparsedPublicKey::new(&s::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            (Public::Ed25519(x), None, Algorithm::EdDSA) => UnparsedPublicKey::new(&s::ED25519, x)
                .verify(message, signature)
                .is_ok(),
            _ => false,
        }
    }
}

/// Which keys of the document carry private parameters (`d`, and for
/// RSA `p`, `q`): a JWKS published by mistake with its secrets is refused,
/// not used. (jsonwebtoken's `Jwk` drops those fields, so the document is
/// read as plain JSON once for this.)
fn private_parts(document: &str) -> Vec<bool> {
    let keys = serde_json::from_str::<serde_json::Value>(document)
        .ok()
        .and_then(|v| v.get("keys").and_then(|k| k.as_array()).cloned())
        .unwrap_or_default();
    keys.iter()
        .map(|k| ["d", "p", "q"].iter().any(|f| k.get(f).is_some()))
        .collect()
}

fn bytes(field: &str, text: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|e| format!("{field}: not base64url: {e}"))
}

/// The key material of a JWK, checked for the sizes its curve needs.
fn public(jwk: &Jwk, family: KeyFamily) -> Result<Public, String> {
    match (&jwk.algorithm, family) {
        (AlgorithmParameters::RSA(rsa), _) => {
            let n = bytes("n", &rsa.n)?;
            // ring verifies 2048 to 8192 bits; say so now rather than
            // refuse every token later.
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if !(2048..=8192).contains(&bits) {
                return Err(format!(
                    "RSA modulus of {bits} bits (2048 to 8192 are accepted)"
                ));
            }
            Ok(Public::Rsa {
                n,
                e: bytes("e", &rsa.e)?,
            })
        }
        (AlgorithmParameters::EllipticCurve(ec), KeyFamily::EcP256 | KeyFamily::EcP384) => {
            let size = if family == KeyFamily::EcP256 { 32 } else { 48 };
            let (x, y) = (bytes("x", &ec.x)?, bytes("y", &ec.y)?);
            if x.len() != size || y.len() != size {
                return Err(format!("x and y must be {size} bytes each"));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Ok(Public::Ec(point))
        }
        (AlgorithmParameters::OctetKeyPair(okp), KeyFamily::Ed25519) => {
            let x = bytes("x", &okp.x)?;
            if x.len() != 32 {
                return Err("an Ed25519 key is 32 bytes".to_owned());
            }
            Ok(Public::Ed25519(x))
        }
        _ => Err("key type is not supported".to_owned()),
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct KeySet {
    keys: Vec<Key>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    #[error("not a JWKS document: {0}")]
    NotJwks(String),
    #[error("holds no keys")]
    Empty,
    #[error("key {index}: {message}")]
    Key { index: usize, message: String },
}

impl KeySet {
    /// Parses a JWKS document; every key must be a usable public key.
    pub fn parse(document: &str) -> Result<Arc<KeySet>, KeySetError> {
        let set: JwkSet =
            serde_json::from_str(document).map_err(|e| KeySetError::NotJwks(e.to_string()))?;
        if set.keys.is_empty() {
            return Err(KeySetError::Empty);
        }
        let private = private_parts(document);
        let mut keys = Vec::with_capacity(set.keys.len());
        for (index, jwk) in set.keys.iter().enumerate() {
            let fail = |message: String| KeySetError::Key { index, message };
            let family = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
                AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                    EllipticCurve::P256 => KeyFamily::EcP256,
                    EllipticCurve::P384 => KeyFamily::EcP384,
                    ref other => return Err(fail(format!("curve {other:?} is not supported"))),
                },
                AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                    KeyFamily::Ed25519
                }
                AlgorithmParameters::OctetKey(_) => {
                    return Err(fail("symmetric keys are not accepted".to_owned()));
                }
                _ => return Err(fail("key type is not supported".to_owned())),
            };
            if private.get(index).copied().unwrap_or(false) {
                return Err(fail(
                    "holds a private key: publish only the public part".to_owned(),
                ));
            }
            let public = public(jwk, family).map_err(fail)?;
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                family,
                public,
            });
        }
        Ok(Arc::new(KeySet { keys }))
    }

    /// The keys a token with this `kid` (or none) may be verified with: the
    /// one with that id, or, for a token without `kid`, every key.
    pub fn candidates<'a>(&'a self, kid: Option<&'a str>) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys
            .iter()
            .filter(move |k| kid.is_none() || k.kid.as_deref() == kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Key sets the evaluator cannot hold itself: those a `jwt` step names by
/// `uri`, which the agent fetches and caches. `None`: not (yet) available.
pub trait RemoteKeys {
    fn get(&self, uri: &str) -> Option<Arc<KeySet>>;
}

/// No remote keys at all: offline prediction (`meshguard check-request`).
pub struct NoRemoteKeys;

impl RemoteKeys for NoRemoteKeys {
    fn get(&self, _: &str) -> Option<Arc<KeySet>> {
        None
    }
}
