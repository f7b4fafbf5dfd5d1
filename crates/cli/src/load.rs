//! `polyhead bench --addr URL`: a gRPC load generator for a running server.
//! Closed loop (N callers, each sending its next request when the last is answered)
//! or open loop at a fixed rate (latency counted from the moment a request was due,
//! so a slow server cannot hide its queueing: no coordinated omission). Latencies go
//! into HDR histograms; errors are counted by gRPC code.
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use polyhead_api::v1::{inference_client::InferenceClient, ClassifyMultiRequest, ClassifyRequest};
use serde_json::json;
use tonic::{metadata::MetadataValue, transport::Channel};

/// Flags of the gRPC load mode.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Server to load (switches `bench` to gRPC load mode), e.g. http://127.0.0.1:50051.
    #[arg(long, value_name = "URL")]
    pub addr: Option<String>,
    /// Task(s) to classify: repeat or comma-separate; requests go round-robin.
    #[arg(long, value_delimiter = ',')]
    pub task: Vec<String>,
    /// Send one ClassifyMulti over all --task values instead of one Classify each.
    #[arg(long)]
    pub multi: bool,
    /// Concurrent callers (closed loop), or the most requests outstanding (with --rate).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Requests per second, open loop; 0 = closed loop.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Stop after this many requests (default: run for --seconds).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Texts per request, taken in turn from --input.
    #[arg(long, default_value_t = 1)]
    pub texts_per_request: usize,
    /// Append a run-unique counter to every text so no request is an embedding-cache
    /// hit (not even of an earlier run against the same server). The suffix costs
    /// ~8 tokens a text; to compare with runtimes that get the bare texts, serve with
    /// `server.cache_bytes = 0` and leave this off (bench/peers.sh does).
    #[arg(long)]
    pub unique: bool,
    /// Per-request deadline in milliseconds (sent as grpc-timeout).
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// Bearer token, when the server protects inference.
    #[arg(long, env = "POLYHEAD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// --input lists picture files (one path per line), sent as images (to a server
    /// on an image backbone); --texts-per-request counts pictures.
    #[arg(long)]
    pub images: bool,
}

/// What a run measured.
#[derive(Debug, Default)]
struct Tally {
    latency: Option<Histogram<u64>>,
    /// Latency of RESOURCE_EXHAUSTED answers: how fast overload is refused.
    refused: Option<Histogram<u64>>,
    codes: BTreeMap<String, u64>,
}

impl Tally {
    fn record(&mut self, micros: u64, code: tonic::Code) {
        let h = match code {
            tonic::Code::Ok => self.latency.as_mut(),
            tonic::Code::ResourceExhausted => self.refused.as_mut(),
            _ => None,
        };
        if let Some(h) = h {
            let _ = h.record(micros.max(1));
        }
        *self.codes.entry(format!("{code:?}")).or_default() += 1;
    }
}

/// Runs the load and prints the report.
pub fn run(args: &LoadArgs, texts: Vec<String>, seconds: f64) -> Result<()> {
    let addr = args
        .addr
        .clone()
        .context("--addr is required for gRPC load")?;
    ensure!(!args.task.is_empty(), "name at least one --task");
    ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    ensure!(
        args.texts_per_request > 0,
        "--texts-per-request must be at least 1"
    );
    ensure!(
        args.rate >= 0.0 && args.rate.is_finite(),
        "--rate must be >= 0"
    );
    let pictures = match args.images {
        true => texts
            .iter()
            .map(|p| std::fs::read(p).with_context(|| format!("reading {p}")))
            .collect::<Result<Vec<_>>>()?,
        false => Vec::new(),
    };
    let addr = crate::client::endpoint_url(&addr);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let channel = Channel::from_shared(addr.clone())?
            .connect()
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        let load = Arc::new(Load {
            args: args.clone(),
            nonce: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32),
            texts,
            pictures,
            next: AtomicU64::new(0),
            client: InferenceClient::new(channel),
            tally: Mutex::new(Tally {
                latency: Some(Histogram::new_with_bounds(1, 600_000_000, 3)?),
                refused: Some(Histogram::new_with_bounds(1, 600_000_000, 3)?),
                codes: BTreeMap::new(),
            }),
        });
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(seconds);
        if args.rate > 0.0 {
            open_loop(&load, end).await;
        } else {
            closed_loop(&load, end).await;
        }
        Ok::<_, anyhow::Error>((load, start.elapsed()))
    })?;
    print_report(args, &report.0, report.1)
}

struct Load {
    args: LoadArgs,
    /// Makes `--unique` texts differ from every earlier run's.
    nonce: u32,
    texts: Vec<String>,
    /// The pictures --input names, with --images.
    pictures: Vec<Vec<u8>>,
    next: AtomicU64,
    client: InferenceClient<Channel>,
    tally: Mutex<Tally>,
}

impl Load {
    /// Takes the next request number, or None when --requests are all sent.
    fn take(&self) -> Option<u64> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        match self.args.requests {
            Some(max) if n >= max => None,
            _ => Some(n),
        }
    }

    /// Sends request `n`; returns its gRPC code.
    async fn send(&self, n: u64) -> tonic::Code {
        let a = &self.args;
        let images: Vec<Vec<u8>> = match a.images {
            true => (0..a.texts_per_request)
                .map(|i| {
                    let k = n as usize * a.texts_per_request + i;
                    self.pictures[k % self.pictures.len()].clone()
                })
                .collect(),
            false => Vec::new(),
        };
        let texts: Vec<String> = if a.images {
            Vec::new()
        } else {
            (0..a.texts_per_request)
                .map(|i| {
                    let k = n as usize * a.texts_per_request + i;
                    let t = &self.texts[k % self.texts.len()];
                    if a.unique {
                        format!("{t} #{:x}{k:x}", self.nonce)
                    } else {
                        t.clone()
                    }
                })
                .collect()
        };
        let mut client = self.client.clone();
        let result = if a.multi {
            let req = self.request(ClassifyMultiRequest {
                tasks: a.task.clone(),
                texts,
                images,
                top_k: 1,
            });
            client.classify_multi(req).await.map(drop)
        } else {
            let req = self.request(ClassifyRequest {
                task: a.task[n as usize % a.task.len()].clone(),
                texts,
                images,
                top_k: 1,
            });
            client.classify(req).await.map(drop)
        };
        result.map_or_else(|s| s.code(), |()| tonic::Code::Ok)
    }

    fn request<T>(&self, body: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(body);
        r.set_timeout(Duration::from_millis(self.args.timeout_ms));
        if let Some(t) = &self.args.token {
            if let Ok(v) = format!("Bearer {t}").parse::<MetadataValue<_>>() {
                r.metadata_mut().insert("authorization", v);
            }
        }
        r
    }

    fn record(&self, since: Instant, code: tonic::Code) {
        let micros = since.elapsed().as_micros() as u64;
        if let Ok(mut t) = self.tally.lock() {
            t.record(micros, code);
        }
    }
}

async fn closed_loop(load: &Arc<Load>, end: Instant) {
    let callers = (0..load.args.concurrency).map(|_| {
        let load = load.clone();
        tokio::spawn(async move {
            while Instant::now() < end {
                let Some(n) = load.take() else { break };
                let t = Instant::now();
                let code = load.send(n).await;
                load.record(t, code);
            }
        })
    });
    for c in callers.collect::<Vec<_>>() {
        let _ = c.await;
    }
}

/// Fixed rate: request i is due at start + i/rate; latency counts from then. At most
/// --concurrency requests are outstanding; a due request beyond that is counted as
/// `ClientOverload` and not sent.
async fn open_loop(load: &Arc<Load>, end: Instant) {
    let start = Instant::now();
    let slots = Arc::new(tokio::sync::Semaphore::new(load.args.concurrency));
    let mut tasks = Vec::new();
    let mut i: u64 = 0;
    loop {
        let due = start + Duration::from_secs_f64(i as f64 / load.args.rate);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let Some(n) = load.take() else { break };
        i += 1;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Ok(mut t) = load.tally.lock() {
                *t.codes.entry("ClientOverload".into()).or_default() += 1;
            }
            continue;
        };
        let load = load.clone();
        tasks.push(tokio::spawn(async move {
            let code = load.send(n).await;
            load.record(due, code);
            drop(slot);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

fn print_report(args: &LoadArgs, load: &Load, elapsed: Duration) -> Result<()> {
    let tally = load
        .tally
        .lock()
        .map_err(|_| anyhow::anyhow!("tally poisoned"))?;
    let Some(h) = tally.latency.as_ref() else {
        bail!("no histogram")
    };
    let secs = elapsed.as_secs_f64();
    let total: u64 = tally.codes.values().sum();
    let ok = tally.codes.get("Ok").copied().unwrap_or(0);
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let out = json!({
        "addr": args.addr, "tasks": args.task, "multi": args.multi,
        "mode": if args.rate > 0.0 { "open" } else { "closed" },
        "concurrency": args.concurrency, "rate": args.rate,
        "texts_per_request": args.texts_per_request, "unique": args.unique,
        "seconds": secs, "requests": total, "ok": ok,
        "requests_per_s": ok as f64 / secs,
        "texts_per_s": (ok as usize * args.texts_per_request) as f64 / secs,
        "latency_ms": { "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": h.max() as f64 / 1000.0, "mean": h.mean() / 1000.0 },
        "refused_latency_ms": tally.refused.as_ref().filter(|r| !r.is_empty()).map(|r| json!({
            "p50": r.value_at_quantile(0.5) as f64 / 1000.0, "p99": r.value_at_quantile(0.99) as f64 / 1000.0,
            "max": r.max() as f64 / 1000.0 })),
        "codes": tally.codes,
    });
    if args.json {
        println!("{out}");
        return Ok(());
    }
    println!(
        "{} requests in {secs:.1} s: {:.1} req/s, {:.1} texts/s ok",
        total,
        ok as f64 / secs,
        (ok as usize * args.texts_per_request) as f64 / secs
    );
    println!(
        "latency ms (ok):  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        h.max() as f64 / 1000.0
    );
    for (code, n) in &tally.codes {
        println!("  {code:<18} {n}");
    }
    Ok(())
}
