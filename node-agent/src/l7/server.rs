//! The ext_proc gRPC server (Envoy's External Processing API v3): one
//! stream per HTTP request. The request headers are evaluated on the chain
//! set current when the stream opened; the response headers get the
//! chain's response changes; any other phase Envoy sends passes untouched.

use std::{
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    time::{Instant, SystemTime},
};

use envoy_types::pb::envoy::service::ext_proc::v3::{
    BodyResponse, ProcessingRequest, ProcessingResponse, TrailersResponse,
    external_processor_server::{ExternalProcessor, ExternalProcessorServer},
    processing_request::Request as Phase,
    processing_response::Response,
};
use meshguard_policy::l7::{HeaderChanges, Outcome, StepRef, Unmatched};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Status, Streaming};

use super::{chains::Current, convert, jwks::RemoteJwks};

/// Where the server listens: a TCP address or `unix:/path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(text: &str) -> Result<Listen, String> {
        match text.strip_prefix("unix:") {
            Some(path) if path.starts_with('/') => Ok(Listen::Unix(path.into())),
            Some(_) => Err(format!(
                "{text:?}: a unix socket takes an absolute path (unix:/run/meshguard/ext-proc.sock)"
            )),
            None => text
                .parse()
                .map(Listen::Tcp)
                .map_err(|_| format!("{text:?} is neither ADDRESS:PORT nor unix:/PATH")),
        }
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(address) => write!(f, "{address}"),
            Listen::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// One request answered, for metrics and logs.
pub struct Answered<'a> {
    pub outcome: &'a Outcome,
    /// Selection and evaluation, in seconds.
    pub seconds: f64,
    /// Each step that ran (or was skipped by its `when`), with its seconds.
    pub steps: &'a [(StepRef, f64)],
    /// Envoy's `x-request-id`, to find the request in Envoy's access log.
    pub request_id: Option<&'a str>,
}

/// Observes each answered request (metrics, logs).
pub type Observe = dyn Fn(Answered<'_>) + Send + Sync;

pub struct Processor {
    pub current: Current,
    pub unmatched: Unmatched,
    /// Key sets of `jwt` steps with a `uri`.
    pub jwks: RemoteJwks,
    pub observe: std::sync::Arc<Observe>,
    /// Streams open now.
    pub streams: prometheus_client::metrics::gauge::Gauge,
}

type Responses = Pin<Box<dyn Stream<Item = Result<ProcessingResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalProcessor for Processor {
    type ProcessStream = Responses;

    async fn process(
        &self,
        request: tonic::Request<Streaming<ProcessingRequest>>,
    ) -> Result<tonic::Response<Responses>, Status> {
        let named = request
            .metadata()
            .get("x-meshguard-chain")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let set = self.current.get();
        let unmatched = self.unmatched;
        let jwks = self.jwks.clone();
        let observe = self.observe.clone();
        let mut inbound = request.into_inner();
        let (send, receive) = mpsc::channel(4);
        let streams = self.streams.clone();
        streams.inc();
        tokio::spawn(async move {
            // Counted down however the stream ends.
            struct Open(prometheus_client::metrics::gauge::Gauge);
            impl Drop for Open {
                fn drop(&mut self) {
                    self.0.dec();
                }
            }
            let _open = Open(streams);
            let mut response_changes = HeaderChanges::default();
            loop {
                let message = match inbound.message().await {
                    Ok(Some(message)) => message,
                    // The stream ended (the request is done) or broke (Envoy
                    // went away): nothing more to answer.
                    Ok(None) | Err(_) => break,
                };
                let answer = match &message.request {
                    Some(Phase::RequestHeaders(headers)) => {
                        let started = Instant::now();
                        match convert::request(
                            headers.headers.as_ref(),
                            &message,
                            &headers.attributes,
                        ) {
                            Err(bad) => convert::bad_request(&bad),
                            Ok(request) => {
                                let now = SystemTime::now()
                                    .duration_since(SystemTime::UNIX_EPOCH)
                                    .unwrap_or_default();
                                let mut steps = Vec::new();
                                let mut mark = Instant::now();
                                let outcome = set.answer(
                                    named.as_deref(),
                                    &request,
                                    unmatched,
                                    now,
                                    &jwks,
                                    Some(&mut |step| {
                                        let at = Instant::now();
                                        steps.push((step, (at - mark).as_secs_f64()));
                                        mark = at;
                                    }),
                                );
                                if let Some(uri) = &outcome.unknown_kid {
                                    jwks.unknown_kid(uri);
                                }
                                observe(Answered {
                                    outcome: &outcome,
                                    seconds: started.elapsed().as_secs_f64(),
                                    steps: &steps,
                                    request_id: request.header("x-request-id"),
                                });
                                response_changes = outcome.response_headers.clone();
                                convert::request_response(&outcome)
                            }
                        }
                    }
                    Some(Phase::ResponseHeaders(_)) => {
                        convert::response_headers_response(&response_changes)
                    }
                    Some(Phase::RequestBody(_)) => {
                        passing(Response::RequestBody(BodyResponse::default()))
                    }
                    Some(Phase::ResponseBody(_)) => {
                        passing(Response::ResponseBody(BodyResponse::default()))
                    }
                    Some(Phase::RequestTrailers(_)) => {
                        passing(Response::RequestTrailers(TrailersResponse::default()))
                    }
                    Some(Phase::ResponseTrailers(_)) => {
                        passing(Response::ResponseTrailers(TrailersResponse::default()))
                    }
                    None => {
                        let _ = send
                            .send(Err(Status::invalid_argument(
                                "a ProcessingRequest without a phase",
                            )))
                            .await;
                        break;
                    }
                };
                let immediate = matches!(answer.response, Some(Response::ImmediateResponse(_)));
                if send.send(Ok(answer)).await.is_err() || immediate {
                    break;
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(receive))))
    }
}

fn passing(response: Response) -> ProcessingResponse {
    ProcessingResponse {
        response: Some(response),
        ..Default::default()
    }
}

/// A listening socket, bound before serving so that a port in use is
/// known at once (and reported), not found later in a background task.
pub enum Bound {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

pub async fn bind(listen: &Listen) -> std::io::Result<Bound> {
    Ok(match listen {
        Listen::Tcp(address) => Bound::Tcp(tokio::net::TcpListener::bind(address).await?),
        Listen::Unix(path) => {
            // A socket left by an earlier run; anything else is not ours.
            if std::fs::symlink_metadata(path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            {
                std::fs::remove_file(path)?;
            }
            Bound::Unix(tokio::net::UnixListener::bind(path)?)
        }
    })
}

/// Serves on the bound socket until the process ends (or the socket fails).
pub async fn serve(bound: Bound, processor: Processor) -> anyhow::Result<()> {
    let service = ExternalProcessorServer::new(processor);
    let router = tonic::transport::Server::builder().add_service(service);
    match bound {
        Bound::Tcp(listener) => {
            // Without TCP_NODELAY a response's small HTTP/2 frames wait for
            // the ACK of the previous ones, which Envoy delays: measured
            // 340 requests/s and 23 ms a request over 8 connections
            // (docs/benchmarks.md). tonic sets it only on sockets it
            // accepts itself.
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|stream| {
                let stream = stream?;
                stream.set_nodelay(true)?;
                Ok::<_, std::io::Error>(stream)
            });
            router.serve_with_incoming(incoming).await?
        }
        Bound::Unix(listener) => {
            router
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
                .await?
        }
    }
    Ok(())
}
