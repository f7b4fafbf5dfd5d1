//! Prometheus metrics: names, descriptions, buckets, and the exporter on its own port.
use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// 1, labelled with the server's version.
pub const BUILD_INFO: &str = "polyhead_build_info";
/// Requests by rpc, task and status code.
pub const REQUESTS: &str = "polyhead_requests_total";
/// Request latency.
pub const REQUEST_DURATION: &str = "polyhead_request_duration_seconds";
/// Time a request's texts waited in the batch queue.
pub const QUEUE_WAIT: &str = "polyhead_queue_wait_seconds";
/// Texts per backbone batch.
pub const BATCH_SIZE: &str = "polyhead_batch_size";
/// Real tokens per backbone batch (after truncation, no padding).
pub const BATCH_TOKENS: &str = "polyhead_batch_tokens";
/// Tokens the backbone computes per batch: its passes, padding included (the budget
/// `server.max_batch_tokens` holds a batch to).
pub const BATCH_COST: &str = "polyhead_batch_computed_tokens";
/// Forward passes per backbone batch.
pub const BATCH_PASSES: &str = "polyhead_batch_passes";
/// Backbone forward time per batch.
pub const FORWARD: &str = "polyhead_backbone_forward_seconds";
/// Time a request waited for and spent tokenizing its cache misses.
pub const TOKENIZE: &str = "polyhead_tokenize_seconds";
/// Time a request waited for its embeddings from the batcher (queue + forward + pooling).
pub const EMBED: &str = "polyhead_embed_seconds";
/// Time one head took over a request's texts, by head kind.
pub const HEAD: &str = "polyhead_head_seconds";
/// Time a request's branch pass took (trunk once, then each adapted task's layers),
/// by task; one observation per adapted task in the pass.
pub const BRANCH: &str = "polyhead_branch_seconds";
/// Texts run through the backbone.
pub const BACKBONE_TEXTS: &str = "polyhead_backbone_texts_total";
/// Further windows of long texts run through the backbone for heads that read every
/// window (the first window is the shared pass; `BACKBONE_TEXTS` counts both).
pub const WINDOW_PASSES: &str = "polyhead_backbone_extra_windows_total";
/// Embedding cache hits.
pub const CACHE_HITS: &str = "polyhead_embedding_cache_hits_total";
/// Embedding cache misses.
pub const CACHE_MISSES: &str = "polyhead_embedding_cache_misses_total";
/// Active head version per task.
pub const HEAD_VERSION: &str = "polyhead_head_active_version";
/// Texts classified per task (Classify and ClassifyMulti alike).
pub const TASK_TEXTS: &str = "polyhead_task_texts_total";
/// Head swaps per task.
pub const HEAD_SWAPS: &str = "polyhead_head_swaps_total";
/// Tasks with a live head.
pub const TASKS_LOADED: &str = "polyhead_tasks_loaded";
/// Training jobs by outcome.
pub const TRAIN_JOBS: &str = "polyhead_train_jobs_total";
/// Requests being processed.
pub const IN_FLIGHT: &str = "polyhead_in_flight_requests";
/// Requests refused because the in-flight limit was reached.
pub const SHED: &str = "polyhead_requests_shed_total";
/// Store re-reads by the watcher (shows it is alive; errors are per task in the log).
pub const STORE_SYNCS: &str = "polyhead_store_syncs_total";
/// 1 while the last store read succeeded, 0 while the store is unreachable.
pub const STORE_UP: &str = "polyhead_store_up";
/// Seconds since the live heads last matched the store.
pub const STORE_LAST_SYNC: &str = "polyhead_store_last_sync_timestamp_seconds";
/// Batch items dropped before the forward pass, by reason.
pub const BATCH_DROPPED: &str = "polyhead_batch_dropped_total";
/// Open client connections.
pub const CONNECTIONS: &str = "polyhead_connections";
/// Connections the server closed for silence, by reason (handshake, idle).
pub const CONNECTIONS_CLOSED: &str = "polyhead_connections_closed_total";
/// Response bytes reserved and not yet sent.
pub const RESPONSE_BYTES: &str = "polyhead_response_bytes_pending";
/// Responses refused because too many response bytes were waiting, by scope.
pub const RESPONSES_REFUSED: &str = "polyhead_responses_refused_total";

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
const TOKEN_BUCKETS: &[f64] = &[
    16.0, 64.0, 256.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0,
];

/// Installs the global recorder (needs a tokio runtime: it keeps the histograms
/// tidy every 5 s); the handle renders the exposition (see [`exposition`]).
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), SIZE_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_TOKENS.into()), TOKEN_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_COST.into()), TOKEN_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_PASSES.into()), SIZE_BUCKETS)?
        .install_recorder()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    describe();
    zero();
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

/// The metrics listener: `GET /metrics` (polyhead's metrics and the standard
/// `process_*` ones), 404 on any other path, 405 for other methods.
pub(crate) fn router(handle: PrometheusHandle) -> axum::Router {
    use axum::{
        http::{header, StatusCode},
        routing::get,
    };
    let render = move || {
        let handle = handle.clone();
        async move {
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                exposition(&handle),
            )
        }
    };
    axum::Router::new()
        .route("/metrics", get(render))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: metrics are at GET /metrics\n",
            )
        })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET /metrics is served here\n",
            )
        })
}

/// polyhead's metrics followed by the process's.
pub(crate) fn exposition(handle: &PrometheusHandle) -> String {
    let mut out = handle.render();
    out.push_str(&process_metrics());
    out
}

/// The standard process metrics (as Prometheus' client libraries export them),
/// read from /proc; empty where there is no /proc.
fn process_metrics() -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    // Clock ticks and page size are 100 and 4096 on every Linux polyhead runs on
    // (x86_64 and aarch64); reading them needs libc.
    const TICKS: f64 = 100.0;
    const PAGE: f64 = 4096.0;
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return out;
    };
    // Fields after the command name (which may hold spaces) in ")".
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // utime, stime: fields 14, 15 of stat(5), here 11, 12; starttime 22 -> 19;
    // vsize 23 -> 20; rss 24 -> 21.
    if let (Some(u), Some(s)) = (field(11), field(12)) {
        metric(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            (u + s) / TICKS,
        );
    }
    if let Some(rss) = field(21) {
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            rss * PAGE,
        );
    }
    if let Some(v) = field(20) {
        metric(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            v,
        );
    }
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    if let (Some(boot), Some(start)) = (boot, field(19)) {
        metric(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            boot + start / TICKS,
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metric(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            fds.count() as f64,
        );
    }
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<f64>().ok())
        });
    if let Some(m) = max_fds {
        metric(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            m,
        );
    }
    out
}

/// Exports the counters alerts and dashboards query at 0 from the start: a series
/// that appears only at its first event makes `rate()` and `increase()` miss it.
fn zero() {
    counter!(SHED).increment(0);
    for outcome in [
        "ok",
        "rejected",
        "failed",
        "cancelled",
        "timeout",
        "invalid",
        "busy",
    ] {
        counter!(TRAIN_JOBS, "outcome" => outcome).increment(0);
    }
    for reason in ["cancelled", "deadline"] {
        counter!(BATCH_DROPPED, "reason" => reason).increment(0);
    }
    for reason in ["handshake", "idle"] {
        counter!(CONNECTIONS_CLOSED, "reason" => reason).increment(0);
    }
    for scope in ["connection", "server"] {
        counter!(RESPONSES_REFUSED, "scope" => scope).increment(0);
    }
    gauge!(IN_FLIGHT).set(0.0);
    gauge!(CONNECTIONS).increment(0.0);
    gauge!(RESPONSE_BYTES).increment(0.0);
}

fn describe() {
    describe_gauge!(BUILD_INFO, "1, labelled with the polyhead version");
    describe_counter!(
        REQUESTS,
        "requests (gRPC, and HTTP under the RPC they map to) by rpc, task and status code"
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "gRPC request latency by rpc and task"
    );
    describe_histogram!(
        QUEUE_WAIT,
        Unit::Seconds,
        "time from enqueue to the start of the backbone batch"
    );
    describe_histogram!(
        BATCH_SIZE,
        Unit::Count,
        "texts per backbone batch (all tasks together)"
    );
    describe_histogram!(
        BATCH_TOKENS,
        Unit::Count,
        "real tokens per backbone batch (after truncation, no padding)"
    );
    describe_histogram!(
        BATCH_COST,
        Unit::Count,
        "tokens the backbone computes per batch: its forward passes, padding included \
         (the unit of server.max_batch_tokens)"
    );
    describe_histogram!(
        BATCH_PASSES,
        Unit::Count,
        "forward passes per backbone batch"
    );
    describe_histogram!(FORWARD, Unit::Seconds, "backbone forward time per batch");
    describe_histogram!(
        TOKENIZE,
        Unit::Seconds,
        "per request: waiting for a tokenizer worker and tokenizing the cache misses"
    );
    describe_histogram!(
        EMBED,
        Unit::Seconds,
        "per request: from handing the token ids to the batcher to having the embeddings"
    );
    describe_histogram!(
        HEAD,
        Unit::Seconds,
        "per request and head: applying the head to the texts, by head kind"
    );
    describe_histogram!(
        BRANCH,
        Unit::Seconds,
        "per request and adapted task: the branch pass its features came from (trunk \
         once for every adapted task of the request, then each task's layers)"
    );
    describe_counter!(BACKBONE_TEXTS, "texts run through the backbone");
    describe_counter!(
        WINDOW_PASSES,
        "further windows of long texts run through the backbone for tasks whose heads read \
         every window (the first window is the shared pass)"
    );
    describe_counter!(CACHE_HITS, "embedding cache hits");
    describe_counter!(CACHE_MISSES, "embedding cache misses");
    describe_gauge!(HEAD_VERSION, "active head version per task");
    describe_counter!(HEAD_SWAPS, "live head swaps per task");
    describe_counter!(
        TASK_TEXTS,
        "texts classified by each task's head, Classify and ClassifyMulti alike"
    );
    describe_gauge!(TASKS_LOADED, "tasks with a live head");
    describe_counter!(TRAIN_JOBS, "TrainHead jobs by outcome");
    describe_gauge!(IN_FLIGHT, "requests being processed");
    describe_counter!(
        SHED,
        "requests refused with RESOURCE_EXHAUSTED by the in-flight limit"
    );
    describe_counter!(
        STORE_SYNCS,
        "store re-reads by the watcher, by outcome (ok, or error when the store root is unreadable)"
    );
    describe_gauge!(
        STORE_UP,
        "1 while the head store answers, 0 while it is unreachable (the last heads keep serving)"
    );
    describe_gauge!(
        STORE_LAST_SYNC,
        Unit::Seconds,
        "unix time of the last successful store sync"
    );
    describe_gauge!(CONNECTIONS, "open client connections");
    describe_counter!(
        CONNECTIONS_CLOSED,
        "connections closed by the server for silence (reason: handshake or idle)"
    );
    describe_gauge!(
        RESPONSE_BYTES,
        Unit::Bytes,
        "response bytes reserved and not yet sent (slow or stalled readers)"
    );
    describe_counter!(
        RESPONSES_REFUSED,
        "responses refused with RESOURCE_EXHAUSTED because too many response bytes were unread (scope: connection or server)"
    );
    describe_counter!(
        BATCH_DROPPED,
        "queued requests dropped before the backbone pass (reason: cancelled or deadline)"
    );
}

/// Records one finished request.
pub fn request(rpc: &'static str, task: &str, code: tonic::Code, elapsed: Duration) {
    let code = crate::status::code_name(code);
    counter!(REQUESTS, "rpc" => rpc, "task" => task.to_owned(), "code" => code).increment(1);
    histogram!(REQUEST_DURATION, "rpc" => rpc, "task" => task.to_owned())
        .record(elapsed.as_secs_f64());
}

/// Records a swap of `task` to `version`.
pub fn swapped(task: &str, version: u64) {
    counter!(HEAD_SWAPS, "task" => task.to_owned()).increment(1);
    gauge!(HEAD_VERSION, "task" => task.to_owned()).set(version as f64);
}

/// Records that `task` left the live set.
pub fn removed(task: &str) {
    gauge!(HEAD_VERSION, "task" => task.to_owned()).set(0.0);
}
