//! One HTTPS GET of a JWKS document, bounded in time and size, parsed
//! before it is handed on: what comes back is a usable set or an error.

use std::{path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use meshguard_policy::l7::{KeySet, keys::KeySetError};

/// Key sets are a few KiB; anything past this is not one.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Transport(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("document larger than {MAX_DOCUMENT_BYTES} bytes")]
    ContentsError,
    #[error("not a usable key set: {0}")]
    Invalid(#[from] KeySetError),
}

impl FetchError {
    /// The `result` label of `meshguard_agent_jwks_fetches_total`.
    pub fn label(&self) -> &'static str {
        match self {
            FetchError::Timeout(_) => "timeout",
            FetchError::Transport(_) => "unreachable",
            FetchError::Status(_) => "http_error",
            FetchError::ContentsError | FetchError::Invalid(_) => "invalid",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{path}: {message}")]
    CaFile { path: String, message: String },
    #[error("TLS set-up: {0}")]
    Tls(String),
}

#[derive(Clone)]
pub struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
    roots: usize,
}

impl Fetcher {
    /// An HTTPS-only client trusting the system's certificate authorities
    /// and those of `ca_file` (a PEM bundle), if given.
    pub fn new(ca_file: Option<&Path>, timeout: Duration) -> Result<Fetcher, TrustError> {
        let mut roots = rustls::RootCertStore::empty();
        // Unreadable system certificates are skipped: a missing bundle is
        // normal in a minimal image that brings its own with --jwks-ca-file.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = ca_file {
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            let fail = |message: String| TrustError::CaFile {
                path: path.display().to_string(),
                message,
            };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| fail(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| fail(e.to_string()))?;
            if certs.is_empty() {
                return Err(fail("holds no PEM certificate".to_owned()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| fail(e.to_string()))?;
            }
        }
        let roots_count = roots.len();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TrustError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .build();
        Ok(Fetcher {
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout,
            roots: roots_count,
        })
    }

    /// Certificate authorities trusted (0: every fetch fails, said at start).
    pub fn roots(&self) -> usize {
        self.roots
    }

    /// GETs `uri` and parses the key set; the whole exchange (connect, TLS,
    /// headers, body) within the timeout.
    pub async fn fetch(&self, uri: &str) -> Result<Arc<KeySet>, FetchError> {
        let request = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "meshguard-agent")
            .body(Empty::new())
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| FetchError::Transport(chain_of(&e)))?;
            let status = response.status();
            if status != http::StatusCode::OK {
                return Err(FetchError::Status(status.as_u16()));
            }
            let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        FetchError::ContentsError
                    } else {
                        FetchError::Transport(e.to_string())
                    }
                })?
                .to_bytes();
            let text = std::str::from_utf8(&body)
                .map_err(|_| FetchError::Invalid(KeySetError::NotJwks("not UTF-8".to_owned())))?;
            Ok(KeySet::parse(text)?)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| FetchError::Timeout(self.timeout))?
    }
}

/// An error and its causes on one line ("client error (Connect): …: certificate unknown").
fn chain_of(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
