//! `moto_server` (PyPI `moto[server]`, installed into .venv by `make test`) as a real SSM and
//! DynamoDB endpoint on 127.0.0.1, started per test and killed on drop. The ledger's table is
//! created by `scripts/create-ledger-table.py` from `template.yaml`'s own definition.

use crate::support::free_port;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ssm::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ssm::types::ParameterType;
use conditional_recording::sources::https::SdkClient;

const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Moto {
    child: Option<Child>,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let program = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
        assert!(
            program.exists(),
            "{} is missing: run `make test`, which installs the test dependencies",
            program.display()
        );
        let port = free_port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let moto = Moto {
            child: Some(child),
            port,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                started.elapsed() < START_TIMEOUT,
                "moto_server did not start on {addr}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // moto loads its SSM backend on the first request, which can take seconds on a busy
        // machine: pay that here, not in the service's first fetch.
        moto.put("/moto/warm-up", "ready", ParameterType::String);
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates the ledger table as the stack does (`scripts/create-ledger-table.py` reads
    /// `template.yaml`'s `LedgerTable`).
    pub fn create_ledger_table(&self, table: &str) {
        let created = create_ledger_table(&self.endpoint(), table);
        assert!(
            created.status.success(),
            "create-ledger-table: {}",
            String::from_utf8_lossy(&created.stderr)
        );
    }

    /// A DynamoDB client for this emulator, as an administrator would have.
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
                .endpoint_url(self.endpoint())
                .http_client(SdkClient::new().expect("TLS settings"))
                .build(),
        )
    }

    /// An S3 client for this emulator, as an administrator would have: by path, since
    /// 127.0.0.1 has no bucket subdomains.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
                .endpoint_url(self.endpoint())
                .force_path_style(true)
                .http_client(SdkClient::new().expect("TLS settings"))
                .build(),
        )
    }

    /// Stops the emulator: SSM becomes unreachable.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Publishes a parameter (overwriting) and returns its new version.
    pub fn put(&self, name: &str, value: &str, kind: ParameterType) -> i64 {
        let client = client(&self.endpoint());
        runtime().block_on(async {
            client
                .put_parameter()
                .name(name)
                .value(value)
                .r#type(kind)
                .overwrite(true)
                .send()
                .await
                .unwrap_or_else(|e| panic!("PutParameter {name}: {e:?}"))
                .version()
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The environment that points the service at an SSM endpoint with dummy credentials and
/// nothing that probes the network.
pub fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL_SSM", endpoint.to_owned()),
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint.to_owned()),
        ("AWS_ENDPOINT_URL_S3", endpoint.to_owned()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
    ]
}

/// An SSM client for `endpoint` with test credentials, as an administrator would have.
pub fn client(endpoint: &str) -> aws_sdk_ssm::Client {
    let config = aws_sdk_ssm::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .endpoint_url(endpoint)
        .http_client(SdkClient::new().expect("TLS settings"))
        .build();
    aws_sdk_ssm::Client::from_conf(config)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A listener that accepts connections and never answers: an SSM that hangs.
pub struct Silent {
    pub port: u16,
    _listener: std::sync::Arc<TcpListener>,
}

impl Silent {
    pub fn start() -> Silent {
        let listener = std::sync::Arc::new(TcpListener::bind("127.0.0.1:0").expect("bind"));
        let port = listener.local_addr().expect("addr").port();
        let accepting = std::sync::Arc::clone(&listener);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            // Holds every connection open, reading nothing, until the process ends.
            while let Ok((stream, _)) = accepting.accept() {
                held.push(stream);
            }
        });
        Silent {
            port,
            _listener: listener,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A TCP proxy in front of an SSM endpoint whose answers can be held back: an SSM that
/// answers, but slower than the service's timeouts. Forwards at once until
/// [`SlowProxy::set_delay`] says otherwise, notes which operations went through, and can hold
/// one request of a given operation until the test lets it go ([`SlowProxy::hold_next`]);
/// lives until the test process ends.
pub struct SlowProxy {
    pub port: u16,
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    operations: Operations,
    gate: std::sync::Arc<Gate>,
}

/// The hold on one request: the operation to hold, a signal when it arrives, and the
/// release the test sends.
struct Gate {
    hold: std::sync::Mutex<Option<String>>,
    arrived: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    arrivals: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    release: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    releases: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl Gate {
    fn new() -> Gate {
        let (arrived, arrivals) = std::sync::mpsc::channel();
        let (release, releases) = std::sync::mpsc::channel();
        Gate {
            hold: std::sync::Mutex::new(None),
            arrived: std::sync::Mutex::new(arrived),
            arrivals: std::sync::Mutex::new(arrivals),
            release: std::sync::Mutex::new(release),
            releases: std::sync::Mutex::new(releases),
        }
    }

    /// Holds the request if it names the held operation (the hold is then spent); a held
    /// request goes on when released, or after a minute whatever happens.
    fn pass(&self, operations: &[String]) {
        let held = {
            let mut hold = lock(&self.hold);
            let held = hold
                .as_ref()
                .is_some_and(|held| operations.iter().any(|o| o == held));
            if held {
                *hold = None;
            }
            held
        };
        if held {
            let _ = lock(&self.arrived).send(());
            let _ = lock(&self.releases).recv_timeout(Duration::from_secs(60));
        }
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `X-Amz-Target` of each request that went through, in order.
type Operations = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

impl SlowProxy {
    /// Forwards to 127.0.0.1:`upstream`.
    pub fn start(upstream: u16) -> SlowProxy {
        use std::sync::Arc;
        use std::sync::atomic::AtomicU64;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let delay = Arc::clone(&delay_ms);
        let operations = Operations::default();
        let seen = Arc::clone(&operations);
        let gate = Arc::new(Gate::new());
        let held = Arc::clone(&gate);
        std::thread::spawn(move || {
            while let Ok((client, _)) = listener.accept() {
                let upstream_addr = SocketAddr::from(([127, 0, 0, 1], upstream));
                // An upstream that is gone closes the client's connection: SSM unreachable.
                let Ok(server) = TcpStream::connect_timeout(&upstream_addr, Duration::from_secs(1))
                else {
                    continue;
                };
                let (Ok(client_reader), Ok(server_reader)) =
                    (client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                let watch = (Arc::clone(&seen), Arc::clone(&held));
                std::thread::spawn(move || pipe(client_reader, server, None, Some(watch)));
                let delay = Arc::clone(&delay);
                std::thread::spawn(move || pipe(server_reader, client, Some(delay), None));
            }
        });
        SlowProxy {
            port,
            delay_ms,
            operations,
            gate,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every chunk SSM sends back from now on waits this long first.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// The SSM operations requested so far (`GetParameter`, `GetParameters`, ...), in order.
    pub fn operations(&self) -> Vec<String> {
        lock(&self.operations).clone()
    }

    /// How many requests named `operation` so far.
    pub fn count(&self, operation: &str) -> usize {
        self.operations().iter().filter(|o| *o == operation).count()
    }

    /// Holds the next request for `operation` until [`SlowProxy::release`].
    pub fn hold_next(&self, operation: &str) {
        *lock(&self.gate.hold) = Some(operation.to_owned());
    }

    /// Waits until the held request has arrived.
    pub fn wait_for_held(&self) {
        lock(&self.gate.arrivals)
            .recv_timeout(Duration::from_secs(60))
            .expect("the held operation was never requested");
    }

    /// Lets the held request go on.
    pub fn release(&self) {
        let _ = lock(&self.gate.release).send(());
    }
}

/// Copies `from` to `to` until either side closes, waiting `delay` before each chunk and,
/// for requests, noting the SSM operation each names and passing it through the gate.
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    delay: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    requests: Option<(Operations, std::sync::Arc<Gate>)>,
) {
    use std::io::{Read, Write};
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((operations, gate)) = &requests {
            gate.pass(&note_operations(&buffer[..n], operations));
        }
        if let Some(delay) = &delay {
            let ms = delay.load(std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(ms));
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

/// Requests to SSM name their operation in one header, `X-Amz-Target: AmazonSSM.<name>`; a
/// request's headers arrive in one chunk on loopback. Returns the chunk's operations.
fn note_operations(chunk: &[u8], operations: &Operations) -> Vec<String> {
    let text = String::from_utf8_lossy(chunk);
    let named: Vec<String> = text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("x-amz-target"))
        .map(|(_, value)| value.trim().trim_start_matches("AmazonSSM.").to_owned())
        .collect();
    lock(operations).extend(named.iter().cloned());
    named
}

/// Runs `scripts/create-ledger-table.py` against `endpoint`.
pub fn create_ledger_table(endpoint: &str, table: &str) -> std::process::Output {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new(repo.join(".venv/bin/python"))
        .arg(repo.join("scripts/create-ledger-table.py"))
        .args(["--endpoint", endpoint, "--table", table])
        .output()
        .expect("the script runs (.venv, made by `make test`)")
}

/// The SDK configuration the service would load for an AWS endpoint at `endpoint` (moto, or
/// a proxy in front of it), with test credentials: for adapters built in this process.
pub fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ssm::config::SharedCredentialsProvider::new(
            Credentials::new("testing", "testing", None, None, "tests"),
        ))
        .endpoint_url(endpoint)
        .http_client(SdkClient::new().expect("TLS settings"))
        .build()
}
