//! One HTTPS stack for both outbound clients: SSM (through the AWS SDK) and TaskRouter's REST
//! API. Both run on hyper with rustls (aws-lc) and trust the Mozilla root set compiled into
//! the binary (webpki-roots), unless SSL_CERT_FILE or SSL_CERT_DIR select the system's way.
//!
//! The SDK's own client reads and parses the system's root store (a bundle and a directory of
//! some 300 files on Debian) before its first request: 2-3 ms of every cold start, paid by a
//! caller. The compiled-in set costs microseconds.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use aws_smithy_runtime_api::client::connection::{CaptureSmithyConnection, ConnectionMetadata};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::body::SdkBody;
use http_body_util::Limited;
use hyper_rustls::{ConfigBuilderExt, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::TokioExecutor;

/// The most of one SSM answer the SDK is given: a parameter holds at most 8 KB, so even a
/// GetParameters of ten is far below this. A longer answer (a broken proxy, a hostile
/// endpoint) fails as unreadable instead of growing the process until Lambda stops it.
pub const MAX_SDK_RESPONSE_BYTES: usize = 1 << 20;

/// The root certificates SSL_CERT_FILE or SSL_CERT_DIR name cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot load the root certificates SSL_CERT_FILE or SSL_CERT_DIR name: {0}")]
pub struct RootsError(String);

/// The TLS settings both clients share, built once: reading the system's roots (when
/// SSL_CERT_FILE or SSL_CERT_DIR ask for them) is the costly part.
fn tls() -> Result<rustls::ClientConfig, RootsError> {
    static TLS: OnceLock<Result<rustls::ClientConfig, RootsError>> = OnceLock::new();
    TLS.get_or_init(|| {
        let builder = rustls::ClientConfig::builder();
        let builder = if std::env::var_os("SSL_CERT_FILE").is_some()
            || std::env::var_os("SSL_CERT_DIR").is_some()
        {
            builder
                .with_native_roots()
                .map_err(|e| RootsError(e.to_string()))?
        } else {
            builder.with_webpki_roots()
        };
        Ok(builder.with_no_client_auth())
    })
    .clone()
}

/// A connector for `https://` and, for local endpoints (moto, a stand-in), `http://` URLs.
pub fn connector(
    connect_timeout: Option<Duration>,
) -> Result<HttpsConnector<TcpConnector>, RootsError> {
    Ok(on(tls()?, connect_timeout))
}

fn on(
    tls: rustls::ClientConfig,
    connect_timeout: Option<Duration>,
) -> HttpsConnector<TcpConnector> {
    let mut tcp = TcpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(connect_timeout);
    tcp.set_nodelay(true);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp)
}

/// The AWS SDK's HTTP client on this stack. The SDK asks for a connector per request with
/// its timeout settings; one connector (and its connection pool) is kept per settings.
#[derive(Debug, Clone)]
pub struct SdkClient {
    tls: rustls::ClientConfig,
    connectors: Arc<Mutex<Vec<(Settings, SharedHttpConnector)>>>,
}

type Settings = (Option<Duration>, Option<Duration>);

impl SdkClient {
    /// Fails only when SSL_CERT_FILE or SSL_CERT_DIR name roots that cannot be read.
    pub fn new() -> Result<SdkClient, RootsError> {
        Ok(SdkClient {
            tls: tls()?,
            connectors: Arc::default(),
        })
    }

    fn connector(&self, (connect_timeout, read_timeout): Settings) -> SdkConnector {
        SdkConnector {
            client: Client::builder(TokioExecutor::new())
                .build(on(self.tls.clone(), connect_timeout)),
            read_timeout,
        }
    }
}

impl HttpClient for SdkClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self
            .connectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, connector)) = connectors.iter().find(|(k, _)| *k == key) {
            return connector.clone();
        }
        let connector = SharedHttpConnector::new(self.connector(key));
        connectors.push((key, connector.clone()));
        connector
    }
}

#[derive(Debug)]
struct SdkConnector {
    client: Client<HttpsConnector<TcpConnector>, SdkBody>,
    read_timeout: Option<Duration>,
}

impl HttpConnector for SdkConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let mut request = request;
        // Lets the SDK close a connection that failed mid-exchange (its retry then opens a
        // fresh one), as its own client does; without it the SDK logs an error per failure.
        let connection = hyper_util::client::legacy::connect::capture_connection(&mut request);
        if let Some(capture) = request.extensions().get::<CaptureSmithyConnection>() {
            capture.set_connection_retriever(move || {
                let connected = connection.connection_metadata();
                connected.as_ref()?;
                let connection = connection.clone();
                Some(
                    ConnectionMetadata::builder()
                        .proxied(false)
                        .poison_fn(move || {
                            if let Some(connected) = connection.connection_metadata().as_ref() {
                                connected.poison();
                            }
                        })
                        .build(),
                )
            });
        }
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let sent = client.request(request);
            let response = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, sent)
                    .await
                    .map_err(|elapsed| ConnectorError::timeout(elapsed.into()))?,
                None => sent.await,
            }
            .map_err(classify)?;
            let response = response
                .map(|body| SdkBody::from_body_1_x(Limited::new(body, MAX_SDK_RESPONSE_BYTES)));
            Response::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// Sorts a failed exchange the way the SDK's retry rules expect: a connection that never
/// opened or broke is I/O (retried), a timeout is a timeout, the rest is other.
fn classify(error: hyper_util::client::legacy::Error) -> ConnectorError {
    if error.is_connect() {
        return ConnectorError::io(error.into()).never_connected();
    }
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            if hyper.is_timeout() {
                return ConnectorError::timeout(error.into());
            }
            if hyper.is_incomplete_message() || hyper.is_closed() || hyper.is_canceled() {
                return ConnectorError::io(error.into());
            }
        }
        if cause.is::<std::io::Error>() {
            return ConnectorError::io(error.into());
        }
        source = cause.source();
    }
    ConnectorError::other(error.into(), None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// GETs `url` through a fresh connector.
    async fn get(
        url: String,
        read_timeout: Option<Duration>,
    ) -> Result<Response<SdkBody>, ConnectorError> {
        SdkClient::new()
            .expect("TLS settings")
            .connector((Some(Duration::from_millis(500)), read_timeout))
            .call(HttpRequest::get(url).expect("request"))
            .await
    }

    /// Serves one connection on 127.0.0.1: reads the request head, then writes `answer`
    /// (nothing, and holds the connection, when `answer` is `None`).
    pub(crate) async fn one_shot(answer: Option<&'static [u8]>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            let mut buffer = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buffer[..n]),
                }
            }
            match answer {
                // The client may stop reading part-way (the length limit): not a failure here.
                Some(answer) => {
                    let _ = socket.write_all(answer).await;
                }
                None => tokio::time::sleep(Duration::from_secs(5)).await,
            }
        });
        format!("http://{address}/")
    }

    #[test]
    fn the_key_exchange_offered_first_is_post_quantum() {
        let tls = tls().expect("TLS settings");
        let first = tls.crypto_provider().kx_groups.first().map(|g| g.name());
        assert_eq!(first, Some(rustls::NamedGroup::X25519MLKEM768));
    }

    #[tokio::test]
    async fn an_answer_comes_back_with_status_and_body() {
        let url = one_shot(Some(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")).await;
        let response = get(url, None).await.expect("response");
        assert_eq!(response.status().as_u16(), 200);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(&body[..], b"ok");
    }

    #[tokio::test]
    async fn an_answer_longer_than_the_limit_fails_instead_of_filling_memory() {
        let mut answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        let chunk = [b'x'; 4096];
        for _ in 0..(MAX_SDK_RESPONSE_BYTES / chunk.len() + 2) {
            answer.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            answer.extend_from_slice(&chunk);
            answer.extend_from_slice(b"\r\n");
        }
        answer.extend_from_slice(b"0\r\n\r\n");
        let url = one_shot(Some(answer.leak())).await;
        let response = get(url, None).await.expect("response");
        let read = response.into_body().collect().await;
        let error = read.expect_err("over the limit");
        assert!(error.to_string().contains("length limit"), "{error}");

        let exact = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {MAX_SDK_RESPONSE_BYTES}\r\n\r\n{}",
            "x".repeat(MAX_SDK_RESPONSE_BYTES)
        );
        let url = one_shot(Some(exact.into_bytes().leak())).await;
        let body = get(url, None)
            .await
            .expect("response")
            .into_body()
            .collect()
            .await;
        assert_eq!(
            body.expect("at the limit").to_bytes().len(),
            MAX_SDK_RESPONSE_BYTES
        );
    }

    #[tokio::test]
    async fn the_sdk_is_told_which_connection_answered_so_it_can_close_it() {
        let url = one_shot(Some(
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n",
        ))
        .await;
        let capture = CaptureSmithyConnection::new();
        let mut request = HttpRequest::get(url).expect("request");
        request.add_extension(capture.clone());
        let response = SdkClient::new()
            .expect("TLS settings")
            .connector((Some(Duration::from_millis(500)), None))
            .call(request)
            .await
            .expect("response");
        assert_eq!(response.status().as_u16(), 500);
        let connection = capture.get().expect("the connection, for the SDK");
        connection.poison();
    }

    #[tokio::test]
    async fn a_refused_connection_is_io_so_the_sdk_retries_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("address"));
        drop(listener);
        let error = get(url, None).await.expect_err("nothing listens");
        assert!(error.is_io(), "{error:?}");
    }

    #[tokio::test]
    async fn a_silent_server_is_a_timeout_after_the_read_timeout() {
        let url = one_shot(None).await;
        let error = get(url, Some(Duration::from_millis(100)))
            .await
            .expect_err("no answer");
        assert!(error.is_timeout(), "{error:?}");
    }

    #[tokio::test]
    async fn a_connection_closed_before_an_answer_is_io() {
        let url = one_shot(Some(b"")).await;
        let error = get(url, None).await.expect_err("closed");
        assert!(error.is_io(), "{error:?}");
    }

    #[tokio::test]
    async fn a_garbled_answer_is_other_and_not_retried() {
        let url = one_shot(Some(b"this is not HTTP\r\n\r\n")).await;
        let error = get(url, None).await.expect_err("garbled");
        assert!(error.is_other(), "{error:?}");
    }
}
