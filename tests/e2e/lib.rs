//! Harness for the end-to-end tests: starts the real `polyhead serve` binary on free
//! loopback ports with a temporary store, and hands out gRPC clients.
#![allow(missing_docs, clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use polyhead_api::v1::{
    inference_client::InferenceClient, registry_client::RegistryClient, train_progress::Event,
    Example, InfoRequest, RegisterHeadRequest, TrainHeadRequest, TrainOptions, TrainResult,
};
use polyhead_heads::{BackboneRef, Dense, Head, HeadArtifact, HeadKind, Manifest, FORMAT_VERSION};
use tonic::{
    metadata::MetadataValue, service::interceptor::InterceptedService, transport::Channel, Code,
    Request, Status,
};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

pub mod http;
mod proxy;
pub mod raw;
pub use proxy::CuttableProxy;

pub const TOKEN: &str = "e2e-admin-token";

/// The workspace root (where `models/` and `target/` are).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `polyhead` binary under test: `POLYHEAD_BIN`, or the workspace's release build.
pub fn binary() -> PathBuf {
    let bin = std::env::var_os("POLYHEAD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release/polyhead"));
    assert!(
        bin.exists(),
        "{} missing: run scripts/test.sh (it builds it) or cargo build --release",
        bin.display()
    );
    bin
}

/// A port nothing listens on, below the kernel's ephemeral range: a port the kernel
/// hands out (bind to 0) may be taken as the local end of a client connection (the
/// attack tests open thousands) before the server binds it, and the server then
/// fails to start. Ports are never handed out twice in one test process.
fn free_port() -> u16 {
    use std::{
        collections::HashSet,
        hash::{BuildHasher, RandomState},
        sync::Mutex,
    };
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|&l| l > 12_000)
        .unwrap_or(32_768);
    let (from, span) = (10_000u16, low - 10_000);
    let mut given = GIVEN.lock().unwrap();
    let given = given.get_or_insert_with(HashSet::new);
    let random = RandomState::new();
    for attempt in 0u64.. {
        let port = from + (random.hash_one((attempt, std::process::id())) % span as u64) as u16;
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
        assert!(attempt < 10_000, "no free port below {low}");
    }
    unreachable!()
}

/// A running server process; killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub metrics_addr: String,
    /// The HTTP/JSON API's address.
    pub http_addr: String,
    pub store: PathBuf,
    /// The server's stderr, when started with [`Server::start_logged`].
    pub log: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a server on a fresh temporary store, with extra `POLYHEAD__...` env.
    pub fn start(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().to_owned();
        let mut s = Server::start_on(&store, env);
        s._dir = Some(dir);
        s
    }

    /// Starts a server on a fresh temporary store with its stderr in a file.
    pub fn start_logged(env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let log = dir.path().join("server.log");
        let mut s = Server::spawn(&store, env, Some(&log));
        s._dir = Some(dir);
        s
    }

    /// Whether the server process is still running.
    pub fn child_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// "running", or "exited" when the process is gone (a zombie not yet waited).
    pub fn process_state(&self) -> &'static str {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())) {
            Ok(stat)
                if !stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z') =>
            {
                "running"
            }
            _ => "exited",
        }
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Resident memory of the server process, in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Starts a server on `store`.
    pub fn start_on(store: &Path, env: &[(&str, &str)]) -> Server {
        Server::spawn(store, env, None)
    }

    /// Starts a server on the store `url` names (e.g. a PostgreSQL database), with
    /// its stderr in a file.
    pub fn start_on_url(url: &str, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let mut s = Server::spawn(Path::new(url), env, Some(&log));
        s._dir = Some(dir);
        s
    }

    fn spawn(store: &Path, env: &[(&str, &str)], log: Option<&Path>) -> Server {
        let (port, mport, hport) = (free_port(), free_port(), free_port());
        let addr = format!("127.0.0.1:{port}");
        let metrics_addr = format!("127.0.0.1:{mport}");
        let http_addr = format!("127.0.0.1:{hport}");
        let mut cmd = Command::new(binary());
        cmd.current_dir(root())
            .args([
                "serve",
                "--addr",
                &addr,
                "--metrics-addr",
                &metrics_addr,
                "--store",
            ])
            .arg(store)
            .env("POLYHEAD__ADMIN__TOKEN", TOKEN)
            .env("POLYHEAD__STORE__POLL_MS", "200")
            .env("POLYHEAD__SERVER__HTTP_ADDR", &http_addr)
            .env("POLYHEAD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(match log {
                Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
                None => Stdio::inherit(),
            });
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        Server {
            child,
            addr,
            metrics_addr,
            http_addr,
            store: store.to_owned(),
            log: log.map(Path::to_owned),
            _dir: None,
        }
    }

    /// The HTTP/JSON API's base URL.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match Channel::from_shared(self.url()).unwrap().connect().await {
                Ok(c) => return c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!(
                    "cannot connect to {}: {e} (server process {})",
                    self.addr,
                    self.process_state()
                ),
            }
        }
    }

    /// Polls health until SERVING; returns every distinct status seen, in order.
    pub async fn wait_serving(&self) -> Vec<ServingStatus> {
        let mut health = HealthClient::new(self.channel().await);
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = Vec::new();
        loop {
            let status = health
                .check(HealthCheckRequest {
                    service: "polyhead.v1.Inference".into(),
                })
                .await
                .map(|r| r.into_inner().status())
                .unwrap_or(ServingStatus::Unknown);
            if seen.last() != Some(&status) {
                seen.push(status);
            }
            if status == ServingStatus::Serving {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "server never became SERVING: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn inference(&self) -> InferenceClient<Channel> {
        InferenceClient::new(self.channel().await)
    }

    /// An admin client sending `token` (None = no authorization header).
    pub async fn admin_with(
        &self,
        token: Option<&str>,
    ) -> RegistryClient<
        InterceptedService<Channel, impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone>,
    > {
        let header: Option<MetadataValue<_>> =
            token.map(|t| format!("Bearer {t}").parse().unwrap());
        RegistryClient::with_interceptor(self.channel().await, move |mut r: Request<()>| {
            if let Some(h) = &header {
                r.metadata_mut().insert("authorization", h.clone());
            }
            Ok(r)
        })
    }

    pub async fn admin(
        &self,
    ) -> RegistryClient<
        InterceptedService<Channel, impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone>,
    > {
        self.admin_with(Some(TOKEN)).await
    }

    /// The Prometheus text exposition.
    pub fn metrics(&self) -> String {
        let mut s = TcpStream::connect(&self.metrics_addr).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// The value of one sample line (`name{labels}` exactly as exposed), 0 if absent.
    pub fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0.0)
    }

    /// Trains `task` on [`spam_examples`] over TrainHead (activating it); returns the
    /// final result and the number of progress messages (stages, candidates, epochs) streamed.
    pub async fn train(&self, task: &str, seed: u64, max_epochs: u32) -> (TrainResult, usize) {
        let examples = spam_examples()
            .into_iter()
            .map(|(text, label)| Example { text, label })
            .collect();
        let request = TrainHeadRequest {
            task: task.into(),
            examples,
            options: Some(TrainOptions {
                seed,
                max_epochs,
                ..Default::default()
            }),
            activate: true,
            ..Default::default()
        };
        let mut stream = self
            .admin()
            .await
            .train_head(request)
            .await
            .unwrap()
            .into_inner();
        let (mut epochs, mut done) = (0, None);
        while let Some(msg) = stream.message().await.unwrap() {
            match msg.event.unwrap() {
                Event::Epoch(_) | Event::Stage(_) | Event::Progress(_) | Event::Candidate(_) => {
                    epochs += 1
                }
                Event::Done(r) => done = Some(r),
            }
        }
        (
            done.expect("the stream ends with the stored version"),
            epochs,
        )
    }

    /// Sends SIGTERM (through kill(1): the workspace forbids unsafe code).
    pub fn terminate(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the CLI with `args` from the workspace root; returns stdout, panics on failure.
pub fn cli(args: &[&str], stdin: Option<&str>) -> String {
    let (code, stdout, stderr) = cli_result(args, stdin.map(str::as_bytes));
    assert_eq!(code, 0, "polyhead {args:?} failed: {stderr}");
    stdout
}

/// `polyhead ARGS` with `stdin`, however it ends: (exit code, stdout, stderr).
pub fn cli_result(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut child = Command::new(binary())
        .current_dir(root())
        .args(args)
        .env("POLYHEAD_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin.unwrap_or(b""));
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A small labelled spam/ham set.
pub fn spam_examples() -> Vec<(String, String)> {
    let spam = [
        "WIN a FREE iPhone now, click here",
        "cheap meds online, no prescription needed",
        "You won $1000, claim your prize today",
        "Hot singles in your area want to meet",
        "Lowest mortgage rates, act now before it ends",
        "Earn money from home fast, guaranteed",
        "Limited offer: 90% discount on luxury watches",
        "Click here to claim your reward points",
        "Congratulations, you were selected for a cash prize",
        "Buy viagra online at the best price",
    ];
    let ham = [
        "Can we meet tomorrow at 10 to go over the plan?",
        "Here are the notes from the design review",
        "Lunch on Friday with the team?",
        "The build is green again after the fix",
        "Please review my pull request when you can",
        "Happy birthday, see you tonight at the restaurant",
        "Minutes of the quarterly planning meeting attached",
        "Your flight itinerary for next week's conference",
        "I pushed the changes to the release branch",
        "Thanks for the feedback on the draft",
    ];
    spam.iter()
        .map(|t| (t.to_string(), "spam".to_string()))
        .chain(ham.iter().map(|t| (t.to_string(), "ham".to_string())))
        .collect()
}

/// A linear 2-label head for `task` on a backbone with `fingerprint` and `dim`.
pub fn artifact(task: &str, fingerprint: &str, dim: usize) -> HeadArtifact {
    let labels = vec!["neg".to_string(), "pos".to_string()];
    let weight = (0..2 * dim)
        .map(|i| ((i % 7) as f32 - 3.0) / 10.0)
        .collect();
    let head = Head::new(
        HeadKind::Linear,
        vec![Dense {
            weight,
            bias: vec![0.0, 0.1],
            input: dim,
            out: 2,
        }],
        labels.clone(),
    )
    .unwrap();
    let manifest = Manifest {
        format: FORMAT_VERSION,
        task: task.into(),
        version: 0,
        labels,
        head: HeadKind::Linear,
        input_dim: dim,
        backbone: BackboneRef {
            name: "all-MiniLM-L6-v2".into(),
            fingerprint: fingerprint.into(),
            dim,
        },
        training: serde_json::Value::Null,
        dataset_hash: String::new(),
        created_at: "2026-11-28T00:00:00Z".into(),
        metrics: None,
        selection: None,
    };
    HeadArtifact { manifest, head }
}

/// The RegisterHead request for `a`.
pub fn upload(a: &HeadArtifact, activate: bool) -> RegisterHeadRequest {
    RegisterHeadRequest {
        manifest_json: a.manifest_json(),
        safetensors: a.safetensors().unwrap(),
        activate,
    }
}

/// The status code of a call's result (OK for success).
pub fn code<T>(r: Result<T, tonic::Status>) -> Code {
    r.map_or_else(|s| s.code(), |_| Code::Ok)
}

/// Polls `cond` every 50 ms for up to `secs`; panics with `what` when it never holds.
pub async fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Classify of one text with its best label.
pub fn one(task: &str, text: &str) -> polyhead_api::v1::ClassifyRequest {
    polyhead_api::v1::ClassifyRequest {
        task: task.into(),
        texts: vec![text.into()],
        top_k: 1,
    }
}

/// `n` distinct texts starting with `prefix`.
pub fn texts(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix} message number {i} about the quarterly report"))
        .collect()
}

/// The server's backbone fingerprint and dimension (what a head must fit).
pub async fn fingerprint(server: &Server) -> (String, usize) {
    let info = server
        .inference()
        .await
        .info(InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    (info.fingerprint, info.dim as usize)
}

/// Registers a linear head for each of `tasks` (fitting the server's backbone).
pub async fn register(server: &Server, tasks: &[&str]) {
    let (fp, dim) = fingerprint(server).await;
    let mut admin = server.admin().await;
    for t in tasks {
        let a = artifact(t, &fp, dim);
        admin.register_head(upload(&a, true)).await.unwrap();
    }
}
