//! The node's WireGuard key pair. The private key lives in a file the agent
//! creates (mode 0600) when it is missing, so a restarted agent keeps its
//! identity and its peers keep it as their peer.

use std::{
    fs::OpenOptions,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use x25519_dalek::{PublicKey, StaticSecret};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a WireGuard private key (44 characters of base64)")]
    Malformed { path: String },
    #[error("{path}: readable by others (mode {mode:o}); a private key must be 0600")]
    Exposed { path: String, mode: u32 },
    #[error("no randomness: {0}")]
    Random(String),
}

/// A WireGuard key pair.
#[derive(Clone)]
pub struct KeyPair {
    secret: StaticSecret,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("KeyPair")
            .field("public", &self.public_base64())
            .finish()
    }
}

impl KeyPair {
    pub fn generate() -> Result<KeyPair, KeyError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(KeyPair {
            secret: StaticSecret::from(bytes),
        })
    }

    pub fn from_base64(text: &str) -> Option<KeyPair> {
        let bytes: [u8; 32] = STANDARD.decode(text.trim()).ok()?.try_into().ok()?;
        Some(KeyPair {
            secret: StaticSecret::from(bytes),
        })
    }

    /// Reads the key at `path`, creating it (mode 0600) when there is none.
    pub fn load_or_create(path: &Path) -> Result<KeyPair, KeyError> {
        let shown = path.display().to_string();
        let io = |source| KeyError::Io {
            path: shown.clone(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(KeyError::Exposed { path: shown, mode });
                }
                KeyPair::from_base64(&text).ok_or(KeyError::Malformed { path: shown })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pair = KeyPair::generate()?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                // create_new: never overwrite a key another process just wrote.
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                writeln!(file, "{}", pair.private_base64()).map_err(io)?;
                Ok(pair)
            }
            Err(e) => Err(io(e)),
        }
    }

    pub fn public(&self) -> [u8; 32] {
        PublicKey::from(&self.secret).to_bytes()
    }

    pub fn public_base64(&self) -> String {
        STANDARD.encode(self.public())
    }

    pub fn private_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    fn private_base64(&self) -> String {
        STANDARD.encode(self.secret.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        // RFC 7748 section 6.1: Alice's private and public key.
        let private = hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let pair = KeyPair::from_base64(&STANDARD.encode(private)).unwrap();
        assert_eq!(
            pair.public(),
            hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
    }

    fn hex32(text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn created_once_with_mode_0600_then_reused() {
        let dir = std::env::temp_dir().join(format!("mg-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/private.key");
        let first = KeyPair::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = KeyPair::load_or_create(&path).unwrap();
        assert_eq!(first.public(), again.public());
        assert!(!format!("{first:?}").contains(&first.private_base64()));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            KeyPair::load_or_create(&path),
            Err(KeyError::Exposed { mode: 0o644, .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            KeyPair::load_or_create(&path),
            Err(KeyError::Malformed { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
