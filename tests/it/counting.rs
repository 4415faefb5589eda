//! A counting proxy for an AWS endpoint (moto): on 127.0.0.1, port 0, each request forwarded
//! as it came and counted by its operation (`X-Amz-Target`: `DynamoDB_20120810.BatchGetItem`
//! counts as `BatchGetItem`), so tests and benchmarks can say what a run cost in requests; and
//! the connections it accepted, so a test can say which requests opened one.
//! Stops when dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::oneshot;

type Counts = Arc<Mutex<HashMap<String, usize>>>;

pub struct CountingProxy {
    pub port: u16,
    counts: Counts,
    connections: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl CountingProxy {
    /// Forwards to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> CountingProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port on 127.0.0.1");
        let port = listener.local_addr().expect("the bound address").port();
        listener.set_nonblocking(true).expect("non-blocking");
        let counts: Counts = Arc::default();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let upstream = upstream.trim_end_matches('/').to_owned();
        let counted = Arc::clone(&counts);
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted_count = Arc::clone(&connections);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
                let client: Client<HttpConnector, Full<Bytes>> =
                    Client::builder(TokioExecutor::new()).build_http();
                loop {
                    let (stream, _) = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok(accepted) => accepted,
                            Err(_) => continue,
                        },
                        _ = &mut stopped => return,
                    };
                    accepted_count.fetch_add(1, Ordering::SeqCst);
                    let (client, upstream, counts) =
                        (client.clone(), upstream.clone(), Arc::clone(&counted));
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            forward(
                                client.clone(),
                                upstream.clone(),
                                Arc::clone(&counts),
                                request,
                            )
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        CountingProxy {
            port,
            counts,
            connections,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests of this operation so far.
    pub fn count(&self, operation: &str) -> usize {
        self.counts().get(operation).copied().unwrap_or_default()
    }

    /// Every operation's requests so far.
    pub fn counts(&self) -> HashMap<String, usize> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Connections accepted so far (not reset by [`CountingProxy::reset`]).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Starts counting again from zero.
    pub fn reset(&self) {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn forward(
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: String,
    counts: Counts,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let (head, body) = request.into_parts();
    let operation = head
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(|target| target.rsplit('.').next().unwrap_or(target).to_owned())
        .unwrap_or_else(|| format!("{} {}", head.method, head.uri.path()));
    *counts
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(operation)
        .or_default() += 1;
    let body = body.collect().await?.to_bytes();
    let target = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut forwarded = Request::builder()
        .method(head.method)
        .uri(format!("{upstream}{target}"));
    for (name, value) in &head.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            forwarded = forwarded.header(name, value);
        }
    }
    let answer = client.request(forwarded.body(Full::new(body))?).await?;
    let (mut head, body) = answer.into_parts();
    for name in HOP_BY_HOP {
        head.headers.remove(name);
    }
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(head, Full::new(body)))
}

/// Headers about one connection, which a proxy does not pass on (RFC 9110, section 7.6.1):
/// moto's `Connection: close` would otherwise close the client's connection to the proxy, and
/// the proxy could not say which requests reuse a connection.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];
