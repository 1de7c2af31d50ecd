//! JSON Web Key Sets, parsed once: the keys a `jwt` step verifies with.
//! A set is never empty: an empty or unreadable document is an error, so a
//! caller keeps the set it had (the contract: a JWKS is never cached empty).

use std::sync::Arc;

use jsonwebtoken::{
    DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, JwkSet},
};

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
    pub key: DecodingKey,
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
            let key = DecodingKey::from_jwk(jwk).map_err(|e| fail(e.to_string()))?;
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                family,
                key,
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
