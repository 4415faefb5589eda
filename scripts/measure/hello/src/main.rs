//! Hello world, in the two faces scripts/measure.sh times: under Lambda
//! (`AWS_LAMBDA_RUNTIME_API` set) a `lambda_http` function answering `{}`, otherwise
//! `hello serve --addr ADDR`, an HTTP/1.1 server answering `{}` to every request that prints
//! its address once it listens.

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return lambda_http::run(service_fn(|_: Request| async {
            Ok::<_, Error>(
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Body::from("{}"))?,
            )
        }))
        .await;
    }
    let addr = std::env::args()
        .nth(3)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("hello serving POST http://{}/", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_| async {
                Ok::<_, Infallible>(
                    hyper::Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(b"{}")))
                        .unwrap_or_default(),
                )
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
