//! Hello world that reads one SSM parameter at init, as scripts/measure.sh's second baseline
//! for Lambda mode: a `lambda_http` function that fetches `HELLO_PARAMETER` (GetParameter,
//! with decryption, through the same SDK crates as conditional-recording, written the usual way:
//! the SDK's default HTTPS client) before it asks for its first event, and answers
//! `{"bytes": N}`, the parameter's length.

use aws_config::BehaviorVersion;
use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let name = std::env::var("HELLO_PARAMETER")?;
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let client = aws_sdk_ssm::Client::new(&config);
    let output = client
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await?;
    let bytes = output
        .parameter()
        .and_then(|p| p.value())
        .map_or(0, str::len);
    lambda_http::run(service_fn(move |_: Request| async move {
        Ok::<_, Error>(
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(format!("{{\"bytes\":{bytes}}}")))?,
        )
    }))
    .await
}
