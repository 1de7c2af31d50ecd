//! Secrets and ConfigMaps as the compiler takes them: a Secret's values are
//! reduced to SHA-256 digests (API keys) and checked public JWKS documents on
//! arrival, so raw key material never enters the compiler, the index or a
//! NodePolicy.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use meshguard_crds::validation::jwks::{self, JwksError};
use sha2::{Digest, Sha256};

/// One Secret, reduced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretDigests {
    pub namespace: String,
    pub name: String,
    pub entries: BTreeMap<String, SecretEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretEntry {
    /// Lower-case hex SHA-256 of the value: what an API-key step compares.
    pub sha256: String,
    /// The value as a JWKS document, if it is one with public keys only.
    pub jwks: Result<String, JwksError>,
}

impl SecretDigests {
    /// Reduces a Secret as the API server holds it (it merges `stringData`
    /// into `data`; a manifest or an object built by hand may carry either).
    pub fn from_secret(namespace: &str, name: &str, secret: Secret) -> SecretDigests {
        let mut data: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        for (k, v) in secret.string_data.unwrap_or_default() {
            data.insert(k, v.into_bytes());
        }
        SecretDigests::reduce(namespace, name, &data)
    }

    /// Reduces a Secret's `data` (values already base64-decoded).
    pub fn reduce(namespace: &str, name: &str, data: &BTreeMap<String, Vec<u8>>) -> SecretDigests {
        let entries = data
            .iter()
            .map(|(key, value)| {
                let sha256 = Sha256::digest(value)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let jwks = match std::str::from_utf8(value) {
                    Ok(text) => jwks::check(text).map(|()| text.to_owned()),
                    Err(e) => Err(JwksError::NotJson(e.to_string())),
                };
                (key.clone(), SecretEntry { sha256, jwks })
            })
            .collect();
        SecretDigests {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            entries,
        }
    }
}

/// One ConfigMap: nothing secret, kept as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigMapData {
    pub namespace: String,
    pub name: String,
    pub data: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_digests() {
        let data = BTreeMap::from([("app".to_owned(), b"abc".to_vec())]);
        let reduced = SecretDigests::reduce("shop", "keys", &data);
        let entry = &reduced.entries["app"];
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            entry.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(entry.jwks.is_err());
        assert!(
            !format!("{reduced:?}").contains("\"abc\""),
            "the raw value is gone"
        );
    }
}
