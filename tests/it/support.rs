//! Shared helpers for the black-box tests: the real binary in `serve` mode, `serve`'s server
//! in-process on a service built here, a raw HTTP/1.1
//! client (so hostile requests can be written byte by byte), form bodies, rules files in a
//! temporary directory, and the server's JSON log lines.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The documented test auth token (events/README.md): no account's real token.
pub const TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// A test API key and secret, for the TaskRouter REST API's other credentials.
pub const API_KEY: &str = "SKfedcba9876543210fedcba9876543210";
pub const API_SECRET: &str = "Zq7Xv2Lp9Rt4Wm8Ks1Nd6Hf3Jb5Gc0Ya";
/// The SSM parameters of the template's defaults.
pub const RULES_PARAMETER: &str = "/conditional-recording/rules";
pub const TOKEN_PARAMETER: &str = "/conditional-recording/twilio-auth-token";

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_conditional-recording");

/// How long `serve` gets to print its first line.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a client waits for any one read or write.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The first line `serve` prints, before the bound address.
const BANNER: &str = "conditional-recording serving POST http://";

pub const INBOUND: &str = include_str!("../data/fixtures/inbound-voice-task-attributes.json");
pub const OUTBOUND: &str = include_str!("../data/fixtures/outbound-voice-task-attributes.json");
pub const CHAT: &str = include_str!("../data/fixtures/chat-task-attributes.json");
/// An outbound call a script placed through the Voice API and sent into `<Enqueue>`: it has
/// a `call_sid`, so TaskRouter can bridge it, unlike the Flex dialer's (`OUTBOUND`).
pub const ENQUEUED_OUTBOUND: &str =
    include_str!("../data/fixtures/enqueued-outbound-task-attributes.json");
pub const INTERNAL: &str = include_str!("../data/fixtures/internal-call-task-attributes.json");
pub const TRANSFERRED: &str =
    include_str!("../data/fixtures/transferred-call-task-attributes.json");
pub const SMS_OUTBOUND: &str = include_str!("../data/fixtures/sms-outbound-task-attributes.json");
pub const WHATSAPP_OUTBOUND: &str =
    include_str!("../data/fixtures/whatsapp-outbound-task-attributes.json");

/// A fixture's path on disk, for `decide --attributes @FILE`.
pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fixtures")
        .join(name)
}

/// Caller data in the fixtures that must never reach a log line.
pub const CALLER_DATA: &[&str] = &[
    "+14155550100",
    "+18005550199",
    "+14155550123",
    "+14155550142",
    "+14155550166",
    "+14155550177",
    "+14155550188",
    "4155550100",
    "8005550199",
    "4155550123",
    "Pat Example",
    "pat@example.com",
    "Customer asked about an invoice",
];

/// The queue the embedded example document excludes.
pub const EXAMPLE_EXCLUDED_QUEUE: &str = "WQ00000000000000000000000000000000";

/// Environment variables the product reads; tests start from none of them.
const PRODUCT_ENV: &[&str] = &[
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_LOG_LEVEL",
    "RULES_PARAMETER",
    "RULES_FILE",
    "RULES_CACHE_TTL_SECONDS",
    "ON_RULES_UNAVAILABLE",
    "TWILIO_AUTH_TOKEN_PARAMETER",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_SIGNATURE_VALIDATION",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_API_BASE_URL",
    "TWILIO_API_KEY",
    "TWILIO_API_SECRET",
    "PUBLIC_URL",
    "ANSWER_MODE",
    "ENFORCEMENT",
    "PUBLIC_EVENTS_URL",
    "TWILIO_VOICE_API_BASE_URL",
    "RUST_LOG",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "AWS_ENDPOINT_URL_SSM",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "LEDGER_TABLE",
    "LEDGER_RETENTION_DAYS",
    "METRICS_NAMESPACE",
];

/// A command for the binary with none of the product's variables inherited, plus `env`.
pub fn command(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    for name in PRODUCT_ENV {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// A unique number per call in this process.
fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------
// The server

/// `conditional-recording serve` on 127.0.0.1, port 0. Killed and reaped on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT/assignment`, as printed.
    pub url: String,
    stdout: Receiver<String>,
    stderr: Option<JoinHandle<Vec<String>>>,
}

impl Server {
    /// Asks the server to stop, as `docker stop` or systemd would (SIGTERM), and waits for it
    /// to exit, at most `within`. Its exit status, `None` if it was still running.
    pub fn terminate(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    /// The server process's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The most resident memory the server process has had so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc status"))
    }

    /// Starts the server on the embedded example rules.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts `serve` on `rules` (a document written to a temporary file, kept as long as the
    /// returned directory) with `env` added after `RULES_FILE`, so it can override it.
    pub fn start_on_rules(rules: &str, env: &[(&str, &str)]) -> (Server, TempDir) {
        let dir = TempDir::new();
        let rules_file = dir.write("rules.json", rules);
        let rules_file = rules_file.to_str().expect("a UTF-8 temp path").to_owned();
        let mut all = vec![("RULES_FILE", rules_file.as_str())];
        all.extend_from_slice(env);
        (Server::start_with(&all), dir)
    }

    /// Starts the server with these environment variables (and no inherited product ones).
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        let mut child = command(env)
            .args(["serve", "--addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let stderr = child.stderr.take().map(collect_lines);
        let stdout = child.stdout.take().map(forward_lines);
        let (stdout, stderr) = match (stdout, stderr) {
            (Some(stdout), Some(stderr)) => (stdout, stderr),
            _ => panic!("the child's pipes are missing"),
        };
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            url: String::new(),
            stdout,
            stderr: Some(stderr),
        };
        let first = match server.stdout.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                server.fail(&format!("serve printed nothing within {START_TIMEOUT:?}"))
            }
            Err(RecvTimeoutError::Disconnected) => {
                server.fail("serve closed stdout before printing its address")
            }
        };
        let Some(addr) = first
            .strip_prefix(BANNER)
            .and_then(|rest| rest.strip_suffix("/assignment"))
            .and_then(|addr| addr.parse().ok())
        else {
            server.fail(&format!("unexpected first line: {first:?}"))
        };
        server.addr = addr;
        server.url = format!("http://{addr}/assignment");
        server
    }

    /// Kills the server and panics with its stderr.
    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
            .join("\n");
        panic!("{why}\n--- stderr of serve ---\n{stderr}");
    }

    /// The next line `serve` prints on stdout after the first.
    pub fn stdout_line(&self) -> Option<String> {
        self.stdout.recv_timeout(IO_TIMEOUT).ok()
    }

    /// Stops the server and returns its stderr, one entry per line.
    pub fn stop(mut self) -> Logs {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let lines = self
            .stderr
            .take()
            .map(|h| h.join().expect("the stderr reader panicked"))
            .unwrap_or_default();
        Logs { lines }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve`'s HTTP server in this process, on 127.0.0.1 port 0, on a runtime of its own
/// whose threads' lines (logs, metrics, decisions) are captured for [`InProcess::stop`]:
/// either the service `wiring` builds from environment variables, as the binary would, or
/// one built here (any adapters, the in-memory ones included). Stopped on drop: no new
/// connection, requests in flight answered first, as `serve` does on SIGTERM.
pub struct InProcess {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT/assignment`.
    pub url: String,
    lines: conditional_recording::logging::Captured,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl InProcess {
    /// `serve` on the embedded example rules, signatures not checked: the binary's
    /// `Server::start()` without the process.
    pub fn example() -> InProcess {
        InProcess::start(app_on(
            conditional_recording::rules::EXAMPLE_DOCUMENT,
            conditional_recording::wiring::Settings::default(),
        ))
    }

    /// The service `serve` builds from these variables (and no others), served in-process.
    pub fn from_env(env: &[(&str, &str)]) -> InProcess {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        let config = conditional_recording::config::Config::from_env(|name| {
            env.iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, value)| value.clone())
        })
        .expect("a valid configuration");
        InProcess::run(|| async move {
            let app = conditional_recording::wiring::build(
                &config,
                conditional_recording::wiring::Face::Serve,
            )
            .await
            .expect("the service starts");
            std::sync::Arc::new(app)
        })
    }

    /// Serves `app`.
    pub fn start<S, Q, A, T, R, L>(
        app: conditional_recording::service::App<S, Q, A, T, R, L>,
    ) -> InProcess
    where
        S: conditional_recording::service::RulesSource,
        Q: conditional_recording::service::QueueDirectory,
        A: conditional_recording::service::TaskAnnotations,
        T: conditional_recording::service::TokenSource,
        R: conditional_recording::service::Recordings,
        L: conditional_recording::service::Ledger,
    {
        InProcess::start_shared(std::sync::Arc::new(app))
    }

    /// Serves `app`, which the test keeps a handle on (to look at its in-memory adapters).
    pub fn start_shared<S, Q, A, T, R, L>(
        app: std::sync::Arc<conditional_recording::service::App<S, Q, A, T, R, L>>,
    ) -> InProcess
    where
        S: conditional_recording::service::RulesSource,
        Q: conditional_recording::service::QueueDirectory,
        A: conditional_recording::service::TaskAnnotations,
        T: conditional_recording::service::TokenSource,
        R: conditional_recording::service::Recordings,
        L: conditional_recording::service::Ledger,
    {
        InProcess::run(|| async move { app })
    }

    /// Builds the service with `build` on the server's runtime (so what it logs is captured
    /// too), then serves it until stopped.
    fn run<F, Fut, S, Q, A, T, R, L>(build: F) -> InProcess
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<
                Output = std::sync::Arc<conditional_recording::service::App<S, Q, A, T, R, L>>,
            >,
        S: conditional_recording::service::RulesSource,
        Q: conditional_recording::service::QueueDirectory,
        A: conditional_recording::service::TaskAnnotations,
        T: conditional_recording::service::TokenSource,
        R: conditional_recording::service::Recordings,
        L: conditional_recording::service::Ledger,
    {
        use conditional_recording::logging::{Captured, capture_on_this_thread, init};
        // The subscriber is process-wide; threads that capture nothing still write to stderr.
        init();
        let lines = Captured::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port on 127.0.0.1");
        let addr = listener.local_addr().expect("the bound address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let captured = std::sync::Arc::clone(&lines);
        let thread = std::thread::spawn(move || {
            capture_on_this_thread(std::sync::Arc::clone(&captured));
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .on_thread_start(move || capture_on_this_thread(std::sync::Arc::clone(&captured)))
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let app = build().await;
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                let shutdown = async move {
                    let _ = stopped.await;
                };
                conditional_recording::serve::serve(app, listener, shutdown)
                    .await
                    .expect("serve");
            });
        });
        InProcess {
            addr,
            url: format!("http://{addr}/assignment"),
            lines,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops the server (requests in flight are answered first) and returns the lines its
    /// threads wrote, kept for the suite-wide scan as the binary's are.
    pub fn stop(mut self) -> Logs {
        self.shut_down();
        let bytes = std::mem::take(
            &mut *self
                .lines
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        keep_log("serve-in-process", &bytes);
        let lines = String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect();
        Logs { lines }
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic in the server thread fails the test that owned it.
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("the in-process server panicked");
            }
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// What a test says to an HTTP server, the binary's or the in-process one.
pub trait Http {
    fn addr(&self) -> SocketAddr;

    /// A new connection to the server.
    fn connect(&self) -> Connection {
        Connection::open(self.addr())
    }

    /// One request on a fresh connection.
    fn send(&self, request: &[u8]) -> Response {
        let mut connection = self.connect();
        connection.send(request);
        connection.response()
    }

    /// `POST /assignment` with a form body, on a fresh connection.
    fn post_form(&self, body: &str) -> Response {
        self.send(&post_form("/assignment", body))
    }
}

impl Http for Server {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Http for InProcess {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Reads lines until EOF on a thread; the handle yields them all. They are also kept for
/// the suite-wide scan for secrets and caller data (see [`keep_log`]).
fn collect_lines(stderr: ChildStderr) -> JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let lines: Vec<String> = BufReader::new(stderr)
            .split(b'\n')
            .map_while(Result::ok)
            .map(|line| String::from_utf8_lossy(&line).into_owned())
            .collect();
        keep_log("serve", lines.join("\n").as_bytes());
        lines
    })
}

/// Runs the binary to its end with these arguments and variables; its stderr is kept under
/// `kind` for the log scan.
pub fn run_binary(kind: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let output = command(env)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
    keep_log(kind, &output.stderr);
    output
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A finished process's status and output, for an assertion's message.
pub fn describe(output: &std::process::Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Keeps what a process of the binary wrote to stderr in `target/tmp/test-logs/`, where
/// `make test` scans every line the suite produced for test tokens and phone numbers.
pub fn keep_log(kind: &str, stderr: &[u8]) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-logs");
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let name = format!("{kind}-{}-{}.log", std::process::id(), next_id());
    let _ = std::fs::write(dir.join(name), stderr);
}

/// Forwards lines to a channel as they come, so a reader can wait with a timeout.
fn forward_lines(stdout: impl Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

// ---------------------------------------------------------------------------------------
// Logs

/// The server's stderr after it stopped.
pub struct Logs {
    pub lines: Vec<String>,
}

impl Logs {
    /// Every line as a JSON object; panics on a line that is not one.
    /// The JSON lines whose `message` is `message`.
    pub fn with_message(&self, message: &str) -> Vec<Value> {
        self.json()
            .into_iter()
            .filter(|line| line["message"] == message)
            .collect()
    }

    pub fn json(&self) -> Vec<Value> {
        self.lines
            .iter()
            .map(|line| match serde_json::from_str::<Value>(line) {
                Ok(value) if value.is_object() => value,
                _ => panic!(
                    "a stderr line is not a JSON object: {line:?}\n{}",
                    self.text()
                ),
            })
            .collect()
    }

    /// The lines whose message is "decision".
    pub fn decisions(&self) -> Vec<Value> {
        self.json()
            .into_iter()
            .filter(|line| line["message"] == "decision")
            .collect()
    }

    /// The decision line for one task; panics unless there is exactly one.
    pub fn decision_for(&self, task_sid: &str) -> Value {
        let mut found: Vec<Value> = self
            .decisions()
            .into_iter()
            .filter(|line| line["task_sid"] == task_sid)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one decision line for {task_sid}\n{}",
            self.text()
        );
        found.remove(0)
    }

    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

// ---------------------------------------------------------------------------------------
// HTTP

/// One HTTP/1.1 connection; requests are written as raw bytes.
pub struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    pub fn open(addr: SocketAddr) -> Connection {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
        stream.set_write_timeout(Some(IO_TIMEOUT)).ok();
        Connection {
            reader: BufReader::new(stream),
        }
    }

    /// Writes bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.reader
            .get_mut()
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("cannot write the request: {e}"));
    }

    /// Writes bytes on a thread, ignoring errors: for bodies the server may stop reading.
    pub fn send_in_background(&self, bytes: Vec<u8>) -> JoinHandle<()> {
        let mut stream = self.reader.get_ref().try_clone().expect("clone the socket");
        std::thread::spawn(move || {
            let _ = stream.write_all(&bytes);
        })
    }

    /// Closes the sending half: the server sees end of stream.
    pub fn finish_sending(&self) {
        let _ = self.reader.get_ref().shutdown(Shutdown::Write);
    }

    /// Reads one response (Content-Length or chunked body).
    pub fn response(&mut self) -> Response {
        let status_line = self.line();
        let mut words = status_line.splitn(3, ' ');
        let version = words.next().unwrap_or_default();
        assert!(
            version.starts_with("HTTP/1."),
            "not an HTTP/1 status line: {status_line:?}"
        );
        let status = words
            .next()
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status code in {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line();
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {line:?}"));
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().expect("a numeric Content-Length");
            response.body = vec![0; length];
            self.reader
                .read_exact(&mut response.body)
                .unwrap_or_else(|e| panic!("cannot read a {length}-byte body: {e}"));
        } else if response
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            response.body = self.chunked_body();
        }
        response
    }

    fn chunked_body(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let size_line = self.line();
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size_line:?}"));
            if size == 0 {
                while !self.line().is_empty() {}
                return body;
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.reader
                .read_exact(&mut body[start..])
                .expect("read a chunk");
            self.line();
        }
    }

    /// One CRLF-terminated line, without the terminator.
    fn line(&mut self) -> String {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => panic!("the server closed the connection before a full response"),
            Ok(_) => {}
            Err(e) => panic!("cannot read the response: {e}"),
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        String::from_utf8(line).expect("a UTF-8 response line")
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics (showing the body) when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts a JSON answer with this status and returns its body.
    pub fn expect_json(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let media = self.header("content-type").unwrap_or_default();
        assert!(
            media.starts_with("application/json"),
            "Content-Type is {media:?}, not application/json"
        );
        self.json()
    }

    /// Asserts a JSON error with this status and returns its message.
    pub fn expect_error(&self, status: u16) -> String {
        let body = self.expect_json(status);
        let object = body.as_object().expect("an error body is an object");
        assert_eq!(object.len(), 1, "an error body has only \"error\": {body}");
        body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {body}"))
            .to_owned()
    }
}

/// A whole request: request line, `Host` (127.0.0.1 unless given), the given headers, `Content-Length` of `body`.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        head.push_str("Host: 127.0.0.1\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `POST path` with a form body.
pub fn post_form(path: &str, body: &str) -> Vec<u8> {
    request(
        "POST",
        path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
}

// ---------------------------------------------------------------------------------------
// Assignment callbacks

/// The form parameters of an assignment callback, in order; repeats allowed.
#[derive(Debug, Clone)]
pub struct Callback {
    pub params: Vec<(String, String)>,
}

impl Callback {
    /// Every documented parameter, with SIDs unique to this callback.
    pub fn new(task_attributes: &str) -> Callback {
        let id = u128::from(next_id()) | (u128::from(std::process::id()) << 64);
        let sid = |prefix: &str| format!("{prefix}{id:032x}");
        let params = [
            ("AccountSid", sid("AC")),
            ("WorkspaceSid", sid("WS")),
            ("WorkflowSid", sid("WW")),
            ("TaskQueueSid", sid("WQ")),
            ("WorkerSid", sid("WK")),
            (
                "WorkerAttributes",
                r#"{"contact_uri":"client:alice","skills":["billing"]}"#.to_owned(),
            ),
            ("TaskSid", sid("WT")),
            ("TaskAttributes", task_attributes.to_owned()),
            ("TaskAge", "12".to_owned()),
            ("TaskPriority", "0".to_owned()),
            ("ReservationSid", sid("WR")),
            ("Timestamp", "1767225600".to_owned()),
        ];
        Callback {
            params: params.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }

    /// The first value of a parameter.
    pub fn get(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} in the callback"))
    }

    pub fn task_sid(&self) -> &str {
        self.get("TaskSid")
    }

    pub fn reservation_sid(&self) -> &str {
        self.get("ReservationSid")
    }

    /// Replaces every value of `name` (adding it when absent).
    pub fn set(mut self, name: &str, value: &str) -> Callback {
        self.params.retain(|(k, _)| k != name);
        self.params.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds one more `name=value`, keeping existing ones.
    pub fn add(mut self, name: &str, value: &str) -> Callback {
        self.params.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn remove(mut self, name: &str) -> Callback {
        self.params.retain(|(k, _)| k != name);
        self
    }

    /// The percent-encoded form body.
    pub fn encode(&self) -> String {
        form(&self.params)
    }

    /// A POST of this callback to `/assignment` at `url`'s host, signed with `token` for
    /// `url`, as TaskRouter sends it.
    pub fn signed(&self, token: &str, url: &str) -> Vec<u8> {
        self.signed_for(token, url, "/assignment", url)
    }

    /// A POST of this callback to `path` at `url`'s host, signed with `token` for
    /// `signed_for` (another URL, to show what a mismatch does).
    pub fn signed_for(&self, token: &str, url: &str, path: &str, signed_for: &str) -> Vec<u8> {
        let signature = conditional_recording::signature::sign(token, signed_for, &self.params);
        request(
            "POST",
            path,
            &[
                ("Host", host(url)),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Twilio-Signature", &signature),
            ],
            self.encode().as_bytes(),
        )
    }
}

/// A Workspace Event Callback to `POST /events` at `addr`: the form, signed with the test
/// token for `http://ADDR/events`, as TaskRouter sends it.
pub fn workspace_event_request(addr: SocketAddr, params: &[(String, String)]) -> Vec<u8> {
    let url = format!("http://{addr}/events");
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let signature = conditional_recording::signature::sign(TOKEN, &url, params);
    request(
        "POST",
        "/events",
        &[
            ("Host", host(&url)),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Twilio-Signature", &signature),
        ],
        body.as_bytes(),
    )
}

/// The authority of an `http://` URL: the `Host` a request to it sends.
pub fn host(url: &str) -> &str {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
}

/// A percent-encoded `application/x-www-form-urlencoded` body.
pub fn form<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        serializer.append_pair(name.as_ref(), value.as_ref());
    }
    serializer.finish()
}

// ---------------------------------------------------------------------------------------
// Temporary files

/// A directory under the system temp dir, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let path = std::env::temp_dir().join(format!(
            "conditional-recording-test-{}-{}-{nanos}",
            std::process::id(),
            next_id()
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    /// Writes `name` in the directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port on 127.0.0.1")
}

/// The service in-process on `rules` (a document's text) with these settings.
pub fn app_on<Q, A, T, R, L>(
    rules: &str,
    settings: conditional_recording::service::Settings<Q, A, T, R, L>,
) -> conditional_recording::service::App<conditional_recording::sources::StaticRules, Q, A, T, R, L>
{
    let rules = conditional_recording::rules::Rules::from_json(rules).expect("valid rules");
    conditional_recording::service::App {
        rules: conditional_recording::sources::StaticRules::new(rules, "test"),
        settings,
    }
}

/// Asserts a decision line's fields for `callback`: the task, reservation, queue and
/// workspace it names, its decision, reason and rule (absent or null when `None`).
pub fn assert_decision_line(
    line: &Value,
    callback: &Callback,
    decision: &str,
    reason: &str,
    rule: Option<&str>,
) {
    for (field, param) in [
        ("task_sid", "TaskSid"),
        ("reservation_sid", "ReservationSid"),
        ("task_queue_sid", "TaskQueueSid"),
        ("workspace_sid", "WorkspaceSid"),
    ] {
        assert_eq!(line[field], callback.get(param), "{field}: {line}");
    }
    assert_eq!(line["decision"], decision, "{line}");
    assert_eq!(line["reason"], reason, "{line}");
    match rule {
        Some(rule) => assert_eq!(line["rule"], rule, "{line}"),
        None => assert!(line.get("rule").is_none_or(Value::is_null), "{line}"),
    }
}

/// A JSON object's keys in byte order (panics on anything else).
pub fn sorted_keys(object: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {object}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// The test token, as the service holds tokens.
pub fn test_tokens() -> std::sync::Arc<conditional_recording::service::AuthTokens> {
    let tokens = conditional_recording::service::AuthTokens::parse(TOKEN).expect("the test token");
    std::sync::Arc::new(tokens)
}

/// Signatures checked against the test token, held as the configured tokens are.
pub fn enforced(public_url: Option<&str>) -> conditional_recording::wiring::Signatures {
    use conditional_recording::sources::tokens::AnyTokens;
    conditional_recording::service::Signatures::Enforce {
        tokens: std::sync::Arc::new(AnyTokens::Fixed(test_tokens())),
        public_url: public_url.map(str::to_owned),
    }
}

// ---------------------------------------------------------------------------------------
// Lambda events

/// An API Gateway event from `tests/data/events/`.
pub fn lambda_event(name: &str) -> Value {
    let path = format!("{}/tests/data/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("a JSON event")
}

/// Rewrites the form body of an event (decoding and re-encoding base64 as the event does,
/// and keeping its Content-Length true).
pub fn with_form(mut event: Value, edit: impl FnOnce(&mut Vec<(String, String)>)) -> Value {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let encoded = event["isBase64Encoded"].as_bool().unwrap_or(false);
    let body = event["body"].as_str().expect("a body").to_owned();
    let bytes = if encoded {
        STANDARD.decode(body).expect("base64")
    } else {
        body.into_bytes()
    };
    let mut form: Vec<(String, String)> = form_urlencoded::parse(&bytes).into_owned().collect();
    edit(&mut form);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    if event["headers"].get("content-length").is_some() {
        event["headers"]["content-length"] = Value::String(body.len().to_string());
    }
    event["body"] = Value::String(if encoded { STANDARD.encode(body) } else { body });
    event
}

/// Sends an event through Lambda mode's path; returns (status, headers, body as JSON).
pub async fn invoke_lambda<S: conditional_recording::sources::RulesSource>(
    app: &conditional_recording::wiring::App<S>,
    event: Value,
) -> (u16, Value, Value) {
    use lambda_http::request::LambdaRequest;
    let payload: LambdaRequest = serde_json::from_value(event).expect("an API Gateway event");
    let response = conditional_recording::lambda::answer(
        app,
        lambda_http::LambdaEvent::new(payload, lambda_http::Context::default()),
    )
    .await;
    let status = response["statusCode"].as_u64().expect("a status") as u16;
    let body = response["body"].as_str().expect("a text body");
    // REST responses carry their headers in multiValueHeaders; API Gateway merges the two.
    let mut headers = response["headers"].clone();
    if let Some(multi) = response["multiValueHeaders"].as_object() {
        for (name, values) in multi {
            headers[name] = values[0].clone();
        }
    }
    (
        status,
        headers,
        serde_json::from_str(body).expect("a JSON body"),
    )
}
