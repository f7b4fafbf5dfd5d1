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
    Example, TrainHeadRequest, TrainOptions, TrainResult,
};
use tonic::{
    metadata::MetadataValue, service::interceptor::InterceptedService, transport::Channel, Request,
    Status,
};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

mod fixtures;
pub mod http;
mod proxy;
pub mod raw;
pub use fixtures::*;
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
        let (mut epochs, mut done) = (0, None);
        for event in self.train_events(task, seed, max_epochs).await {
            match event {
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

    /// Every event of a TrainHead of `task` on [`spam_examples`] (activating it), in order.
    pub async fn train_events(&self, task: &str, seed: u64, max_epochs: u32) -> Vec<Event> {
        self.train_events_with(
            task,
            TrainOptions {
                seed,
                max_epochs,
                ..Default::default()
            },
        )
        .await
    }

    /// Every event of a TrainHead of `task` on [`spam_examples`] with `options`
    /// (activating it), in order.
    pub async fn train_events_with(&self, task: &str, options: TrainOptions) -> Vec<Event> {
        let examples = spam_examples()
            .into_iter()
            .map(|(text, label)| Example { text, label })
            .collect();
        self.train_events_on(task, examples, options).await
    }

    /// Every event of a TrainHead of `task` on `examples` with `options` (activating
    /// it), in order.
    pub async fn train_events_on(
        &self,
        task: &str,
        examples: Vec<Example>,
        options: TrainOptions,
    ) -> Vec<Event> {
        let request = TrainHeadRequest {
            task: task.into(),
            examples,
            options: Some(options),
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
        let mut events = Vec::new();
        while let Some(msg) = stream.message().await.unwrap() {
            events.push(msg.event.expect("every message has an event"));
        }
        events
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
