//! Checks on a JSON Web Key Set document, wherever it comes from (inline in a
//! PolicyChain, or a ConfigMap or Secret the compiler resolves).
//!
//! A JWKS ends up in NodePolicy, readable by every node, so it must hold public
//! keys only; and a set the agent cannot use would only fail at request time,
//! so the parameters each key type needs are checked here, up front.

use serde_json::Value;

/// Members that only private or symmetric keys carry (RFC 7518 section 6).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a JWKS document was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("must be a JSON object with a non-empty \"keys\" array")]
    NoKeys,
    #[error("key {index}: must be a JSON object with a string \"kty\"")]
    NoKeyType { index: usize },
    #[error("key {index}: kty \"{kty}\" is not supported (use RSA, EC or OKP public keys)")]
    UnsupportedKeyType { index: usize, kty: String },
    #[error("key {index}: holds private key material (\"{member}\"); publish public keys only")]
    PrivateMaterial { index: usize, member: &'static str },
    #[error("key {index}: {kty} key lacks \"{member}\"")]
    MissingMember {
        index: usize,
        kty: String,
        member: &'static str,
    },
}

/// Parses `document` and checks it is a set of usable public keys.
pub fn check(document: &str) -> Result<(), JwksError> {
    let parsed: Value =
        serde_json::from_str(document).map_err(|e| JwksError::NotJson(e.to_string()))?;
    let keys = parsed
        .get("keys")
        .and_then(Value::as_array)
        .filter(|keys| !keys.is_empty())
        .ok_or(JwksError::NoKeys)?;
    for (index, key) in keys.iter().enumerate() {
        let kty = key
            .get("kty")
            .and_then(Value::as_str)
            .ok_or(JwksError::NoKeyType { index })?;
        if let Some(member) = PRIVATE_MEMBERS.into_iter().find(|m| key.get(m).is_some()) {
            return Err(JwksError::PrivateMaterial { index, member });
        }
        let needed: &[&'static str] = match kty {
            "RSA" => &["n", "e"],
            "EC" => &["crv", "x", "y"],
            "OKP" => &["crv", "x"],
            other => {
                return Err(JwksError::UnsupportedKeyType {
                    index,
                    kty: other.to_owned(),
                });
            }
        };
        if let Some(member) = needed
            .iter()
            .find(|m| key.get(**m).and_then(Value::as_str).is_none())
        {
            return Err(JwksError::MissingMember {
                index,
                kty: kty.to_owned(),
                member,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA: &str = r#"{"kty":"RSA","n":"sXch","e":"AQAB","kid":"a"}"#;

    #[test]
    fn public_keys_pass() {
        let doc = format!(
            r#"{{"keys":[{RSA},{{"kty":"EC","crv":"P-256","x":"a","y":"b"}},{{"kty":"OKP","crv":"Ed25519","x":"c"}}]}}"#
        );
        assert_eq!(check(&doc), Ok(()));
    }

    #[test]
    fn refusals_name_the_problem() {
        let cases = [
            ("{", "not JSON"),
            (r#"{"keys":[]}"#, "non-empty \"keys\""),
            (
                r#"{"keys":[{"n":"x"}]}"#,
                "key 0: must be a JSON object with a string \"kty\"",
            ),
            (
                r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#,
                "key 0: holds private key material (\"k\")",
            ),
            (
                r#"{"keys":[{"kty":"RSA","n":"a","e":"b","d":"c"}]}"#,
                "(\"d\")",
            ),
            (
                r#"{"keys":[{"kty":"EC","crv":"P-256","x":"a"}]}"#,
                "EC key lacks \"y\"",
            ),
            (
                r#"{"keys":[{"kty":"XYZ"}]}"#,
                "kty \"XYZ\" is not supported",
            ),
        ];
        for (doc, expected) in cases {
            let message = check(doc).expect_err(doc).to_string();
            assert!(message.contains(expected), "{doc}: {message}");
        }
    }
}
