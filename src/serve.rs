//! `serve`: the shared handler on a local HTTP/1.1 server, for trying the service and for
//! tests.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use lambda_http::Body;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::handler::{BodyProblem, MAX_BODY_BYTES};
use crate::service::{
    App, Ledger, QueueDirectory, Recordings, RulesSource, TaskAnnotations, TokenSource,
};

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 512;
/// A client gets this long to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// And this long to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, requests already received get this long to be answered: TaskRouter waits
/// 5 s for an answer, so a callback in flight is never simply dropped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves until `shutdown` completes; then takes no new connection, answers the requests
/// already received (within [`DRAIN_TIMEOUT`]) and closes idle connections.
pub async fn serve<S, Q, A, T, R, L>(
    app: Arc<App<S, Q, A, T, R, L>>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: RulesSource,
    Q: QueueDirectory,
    A: TaskAnnotations,
    T: TokenSource,
    R: Recordings,
    L: Ledger,
{
    let connections = GracefulShutdown::new();
    tokio::pin!(shutdown);
    accept(app, &listener, &connections, &mut shutdown).await;
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "shutting down with requests still unanswered after {} ms",
            DRAIN_TIMEOUT.as_millis()
        );
    }
    // Refusals counted since the last line the ration allowed are not lost with the process.
    crate::refusal_log::write_pending();
    Ok(())
}

/// Accepts connections until `shutdown` completes.
async fn accept<S, Q, A, T, R, L>(
    app: Arc<App<S, Q, A, T, R, L>>,
    listener: &TcpListener,
    connections: &GracefulShutdown,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) where
    S: RulesSource,
    Q: QueueDirectory,
    A: TaskAnnotations,
    T: TokenSource,
    R: Recordings,
    L: Ledger,
{
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            () = &mut *shutdown => return,
            permit = Arc::clone(&permits).acquire_owned() => permit,
        };
        let Ok(permit) = permit else { return };
        let (stream, _) = tokio::select! {
            () = &mut *shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let app = Arc::clone(&app);
        let service = hyper::service::service_fn(move |request| {
            let app = Arc::clone(&app);
            async move { Ok::<_, Infallible>(answer(&app, request).await) }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let watched = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = watched.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(permit);
        });
    }
}

async fn answer<S, Q, A, T, R, L>(
    app: &App<S, Q, A, T, R, L>,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>>
where
    S: RulesSource,
    Q: QueueDirectory,
    A: TaskAnnotations,
    T: TokenSource,
    R: Recordings,
    L: Ledger,
{
    let (parts, body) = request.into_parts();
    let (body, problem) = read_body(body).await;
    let mut request = lambda_http::Request::from_parts(parts, body);
    if let Some(problem) = problem {
        request.extensions_mut().insert(problem);
    }
    let (parts, body) = app.handle(request).await.into_parts();
    let bytes = match body {
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}

/// Reads at most [`MAX_BODY_BYTES`], within [`BODY_TIMEOUT`].
async fn read_body(body: Incoming) -> (Body, Option<BodyProblem>) {
    match tokio::time::timeout(BODY_TIMEOUT, gather(body)).await {
        Ok(Ok(bytes)) => (Body::Binary(bytes), None),
        Ok(Err(problem)) => (Body::Empty, Some(problem)),
        Err(_) => (Body::Empty, Some(BodyProblem::Unreadable)),
    }
}

/// The body copied into one buffer as it arrives. Kept as hyper hands it over, each chunk
/// would hold on to its own allocation: a 256 KiB body sent in 1-byte chunks took 10 MB.
async fn gather(mut body: Incoming) -> Result<Vec<u8>, BodyProblem> {
    let announced = body.size_hint().lower();
    if announced > MAX_BODY_BYTES as u64 {
        return Err(BodyProblem::TooLarge);
    }
    let mut bytes = Vec::with_capacity(announced as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyProblem::Unreadable)?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > MAX_BODY_BYTES {
                return Err(BodyProblem::TooLarge);
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}
