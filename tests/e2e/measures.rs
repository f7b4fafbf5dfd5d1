//! RELIABILITY.md's attack rows (issue 18), at the shipped defaults: each prints one
//! `MEASURE {json}` line. Long, so `#[ignore]`d; `bench/attacks.sh` runs them.
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use polyhead_api::v1::{ClassifyRequest, EmbedRequest, Example, TrainHeadRequest};
use polyhead_e2e::{raw, register, texts, Server};

/// One-text Classify calls in a loop on their own connection, every 100 ms, until
/// [`Caller::finish`].
struct Caller {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Vec<Duration>, usize)>,
}

impl Caller {
    fn start(server: &Server) -> Caller {
        let url = server.url();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let channel = tonic::transport::Channel::from_shared(url)
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut client = polyhead_api::v1::inference_client::InferenceClient::new(channel);
            let (mut ok, mut failed, mut i) = (Vec::new(), 0, 0u64);
            while !stopped.load(Ordering::SeqCst) {
                i += 1;
                let t = Instant::now();
                let r = client
                    .classify(ClassifyRequest {
                        task: "a".into(),
                        texts: vec![format!("a one-text call number {i} {}", rand_tag())],
                        top_k: 1,
                        ..Default::default()
                    })
                    .await;
                match r {
                    Ok(_) => ok.push(t.elapsed()),
                    Err(_) => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (ok, failed)
        });
        Caller { stop, task }
    }

    /// Stops the calls: their latency percentiles and the number that failed.
    async fn finish(self) -> (serde_json::Value, usize) {
        self.stop.store(true, Ordering::SeqCst);
        let (ok, failed) = self.task.await.unwrap();
        (percentiles(ok), failed)
    }
}

/// A server at the defaults serving task `a`.
async fn serving() -> Server {
    let server = Server::start(&[]);
    server.wait_serving().await;
    register(&server, &["a"]).await;
    server
}

fn rand_tag() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// p50, p99, max in ms.
fn percentiles(mut v: Vec<Duration>) -> serde_json::Value {
    v.sort();
    let at = |q: f64| {
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    serde_json::json!({"n": v.len(), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0)})
}

fn long_texts(tag: &str, n: usize) -> Vec<String> {
    let word = "lorem ipsum dolor sit amet consectetur adipiscing ";
    (0..n)
        .map(|i| format!("{tag} {i} {} {}", rand_tag(), word.repeat(60)))
        .collect()
}

/// A slow reader at scale: 12 zero-window connections, 300 Embed calls each of 256
/// cached texts (~400 KB answers), beside one-text callers.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: bench/attacks.sh"]
async fn measure_slow_reader() {
    let server = serving().await;
    let embed = EmbedRequest {
        texts: texts("slow reader", 256),
        ..Default::default()
    };
    server.inference().await.embed(embed.clone()).await.unwrap();
    let rss_before = server.rss_kib();
    let caller = Caller::start(&server);
    let started = Instant::now();
    let attackers: Vec<_> = (0..12)
        .map(|_| {
            let (addr, embed) = (server.addr.clone(), embed.clone());
            tokio::spawn(async move {
                let mut conn = raw::RawConnection::open(&addr, 0).await;
                let (mut stalled, mut refused) = (Vec::new(), 0usize);
                for _ in 0..300 {
                    let a = conn
                        .call("/polyhead.v1.Inference/Embed", raw::message(&embed), &[])
                        .await;
                    match a.grpc_status {
                        None => stalled.push(a),
                        Some(8) => refused += 1,
                        Some(c) => panic!("status {c}: {}", a.grpc_message),
                    }
                }
                (conn, stalled, refused)
            })
        })
        .collect();
    let mut peak_rss = 0;
    let mut peak_pending: f64 = 0.0;
    while attackers.iter().any(|a| !a.is_finished()) {
        peak_rss = peak_rss.max(server.rss_kib());
        peak_pending = peak_pending.max(server.metric("polyhead_response_bytes_pending"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut held = Vec::new();
    let (mut stalled, mut refused) = (0, 0);
    for a in attackers {
        let (conn, s, r) = a.await.unwrap();
        stalled += s.len();
        refused += r;
        held.push((conn, s));
    }
    peak_rss = peak_rss.max(server.rss_kib());
    let during = started.elapsed();
    let (one_text, failed) = caller.finish().await;
    drop(held);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_after_5s = server.rss_kib();
    let pending_after = server.metric("polyhead_response_bytes_pending");
    tokio::time::sleep(Duration::from_secs(25)).await;
    println!(
        "MEASURE {}",
        serde_json::json!({
            "scenario": "slow reader: 12 connections x 300 Embed calls, zero window",
            "seconds": during.as_secs_f64(),
            "answers_buffered": stalled, "refused_resource_exhausted": refused,
            "peak_pending_bytes": peak_pending,
            "rss_mb": {"before": rss_before / 1024, "peak": peak_rss / 1024,
                       "after_5s": rss_after_5s / 1024, "after_30s": server.rss_kib() / 1024},
            "pending_bytes_after_close": pending_after,
            "one_text_calls": one_text, "one_text_failed": failed,
        })
    );
}

/// 1,000 connections that send nothing (or half the preface), beside one-text
/// callers: the calls are answered, and the server closes the silent ones.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: bench/attacks.sh"]
async fn measure_idle_connections() {
    use std::io::{Read, Write};
    let server = serving().await;
    let caller = Caller::start(&server);
    let opened = Instant::now();
    let mut silent = Vec::new();
    for i in 0..1000 {
        let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
        if i % 2 == 1 {
            s.write_all(b"PRI * HTTP/2").unwrap();
        }
        silent.push(s);
    }
    let open_gauge = server.metric("polyhead_connections");
    let closing = tokio::task::spawn_blocking(move || {
        let mut closed = 0;
        for mut s in silent {
            s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
            let mut buf = [0u8; 64];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
            closed += 1;
        }
        closed
    });
    let closed = closing.await.unwrap();
    let all_closed = opened.elapsed();
    let (one_text, failed) = caller.finish().await;
    println!(
        "MEASURE {}",
        serde_json::json!({
            "scenario": "1,000 silent connections (half of them half a preface)",
            "open_connections_gauge_after_connecting": open_gauge,
            "closed_by_server": closed, "all_closed_after_s": all_closed.as_secs_f64(),
            "closed_total_handshake": server.metric("polyhead_connections_closed_total{reason=\"handshake\"}"),
            "one_text_calls": one_text, "one_text_failed": failed,
        })
    );
}

/// Requests at the limits back to back (128 texts of 256 tokens, the
/// `max_request_tokens` budget) for 60 s, beside one-text callers; and the issue's
/// request (255 texts x 64 KiB), now refused.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: bench/attacks.sh"]
async fn measure_at_the_limits() {
    let server = serving().await;
    let mut client = server.inference().await;
    let huge: Vec<String> = (0..255)
        .map(|i| format!("{i} {}", "lorem ipsum ".repeat(6000))[..65_000].to_owned())
        .collect();
    let t = Instant::now();
    let refused = client
        .classify(ClassifyRequest {
            task: "a".into(),
            texts: huge,
            top_k: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    let refused_ms = t.elapsed().as_secs_f64() * 1e3;
    let caller = Caller::start(&server);
    let started = Instant::now();
    let mut big = Vec::new();
    while started.elapsed() < Duration::from_secs(60) {
        let t = Instant::now();
        client
            .classify(ClassifyRequest {
                task: "a".into(),
                texts: long_texts("big", 128),
                top_k: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        big.push(t.elapsed());
    }
    let (one_text, failed) = caller.finish().await;
    println!(
        "MEASURE {}",
        serde_json::json!({
            "scenario": "requests of 128 x 256 tokens back to back for 60 s",
            "issue_request_255x64KiB": {"code": format!("{:?}", refused.code()), "ms": refused_ms},
            "big_requests": percentiles(big),
            "one_text_calls": one_text, "one_text_failed": failed,
        })
    );
}

/// A TrainHead of 300 uncached long texts, beside one-text callers.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: bench/attacks.sh"]
async fn measure_inference_during_training() {
    let server = serving().await;
    let examples: Vec<Example> = long_texts("train", 300)
        .into_iter()
        .enumerate()
        .map(|(i, text)| Example {
            text,
            label: if i % 2 == 0 { "x" } else { "y" }.into(),
        })
        .collect();
    let caller = Caller::start(&server);
    let t = Instant::now();
    let mut stream = server
        .admin()
        .await
        .train_head(TrainHeadRequest {
            task: "trained".into(),
            examples,
            activate: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    while stream.message().await.unwrap().is_some() {}
    let trained = t.elapsed();
    let (one_text, failed) = caller.finish().await;
    println!(
        "MEASURE {}",
        serde_json::json!({
            "scenario": "TrainHead of 300 uncached texts of 256 tokens",
            "train_seconds": trained.as_secs_f64(),
            "one_text_calls": one_text, "one_text_failed": failed,
        })
    );
}
