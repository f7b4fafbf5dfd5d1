//! Several replicas on one PostgreSQL store (issue 10): a change made through one
//! replica is served by the other within 1 s; activations racing from both leave a
//! loadable active version that both serve; a database outage fails no Classify and
//! the replicas catch up when it returns; the access and audit logs. These tests need
//! the PostgreSQL server (`POLYHEAD_TEST_DATABASE_URL`, default the CI machine's) and
//! fail when it is down.
use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use polyhead_api::v1::{ActivateVersionRequest, ClassifyRequest, RollbackRequest};
use polyhead_e2e::{
    artifact, cli, code, eventually, fingerprint, texts, upload, CuttableProxy, Server,
};
use polyhead_heads::{
    testing::{files_under as tree, TestDatabase},
    HeadStore, PgHeadStore,
};
use tonic::Code;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

/// The version `server` answers `task` with, or 0 when it has none.
async fn served_version(server: &Server, task: &str) -> u64 {
    let mut c = server.inference().await;
    c.classify(ClassifyRequest {
        task: task.into(),
        texts: vec!["hello".into()],
        top_k: 1,
        ..Default::default()
    })
    .await
    .map_or(0, |r| r.into_inner().head_version)
}

/// Polls until `server` serves `version` of `task`; returns how long it took.
async fn until_served(server: &Server, task: &str, version: u64, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if served_version(server, task).await == version {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{} did not serve {task} v{version} within {within:?}",
            server.addr
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn health(server: &Server, service: &str) -> ServingStatus {
    HealthClient::new(server.channel().await)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

/// A cuttable proxy in front of `db`'s server, and `db`'s URL through it.
async fn proxied(db: &TestDatabase) -> (CuttableProxy, String) {
    // The database's host:port, taken from its URL.
    let after_at = db.url().rsplit_once('@').map_or(db.url(), |(_, h)| h);
    let upstream = after_at.split('/').next().unwrap().to_owned();
    let proxy = CuttableProxy::start(&upstream).await;
    let via_proxy = db.url().replace(&upstream, &proxy.addr);
    (proxy, via_proxy)
}

/// Two replicas (slow poll, so only notifications can make the 1 s) on one database.
async fn two_replicas(url: &str) -> (Server, Server) {
    let env = [("POLYHEAD__STORE__POLL_MS", "30000")];
    let (a, b) = (
        Server::start_on_url(url, &env),
        Server::start_on_url(url, &env),
    );
    a.wait_serving().await;
    b.wait_serving().await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_through_one_replica_is_served_by_the_other_within_a_second() {
    let db = TestDatabase::create();
    let (a, b) = two_replicas(db.url()).await;
    let (fp, dim) = fingerprint(&a).await;

    // Register through A: B serves it within 1 s of A's answer.
    let mut admin_a = a.admin().await;
    admin_a
        .register_head(upload(&artifact("shared", &fp, dim), true))
        .await
        .unwrap();
    let took = until_served(&b, "shared", 1, Duration::from_secs(1)).await;
    eprintln!("register via A -> served by B after {took:?}");

    // A second version, activated through B: A follows.
    let mut admin_b = b.admin().await;
    admin_b
        .register_head(upload(&artifact("shared", &fp, dim), false))
        .await
        .unwrap();
    admin_b
        .activate_version(ActivateVersionRequest {
            task: "shared".into(),
            version: 2,
        })
        .await
        .unwrap();
    let took = until_served(&a, "shared", 2, Duration::from_secs(1)).await;
    eprintln!("activate via B -> served by A after {took:?}");

    // Rollback through A: both back on 1.
    admin_a
        .rollback(RollbackRequest {
            task: "shared".into(),
        })
        .await
        .unwrap();
    until_served(&b, "shared", 1, Duration::from_secs(1)).await;
    // The metric shows the store as up on both.
    assert_eq!(a.metric("polyhead_store_up"), 1.0);
    assert_eq!(b.metric("polyhead_store_up"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_activations_from_both_replicas_leave_one_loadable_version() {
    let db = TestDatabase::create();
    let (a, b) = two_replicas(db.url()).await;
    let (fp, dim) = fingerprint(&a).await;
    let mut admin = a.admin().await;
    for _ in 0..3 {
        admin
            .register_head(upload(&artifact("race", &fp, dim), true))
            .await
            .unwrap();
    }
    let mut writers = Vec::new();
    for (i, server) in [&a, &b].into_iter().enumerate() {
        let mut admin = server.admin().await;
        writers.push(tokio::spawn(async move {
            for j in 0..30u64 {
                let version = 1 + (j + i as u64) % 3;
                let r = admin
                    .activate_version(ActivateVersionRequest {
                        task: "race".into(),
                        version,
                    })
                    .await;
                assert_eq!(code(r), Code::Ok);
                if j % 5 == 0 {
                    // Rollback may find nothing to roll back to; never anything else.
                    let r = admin
                        .rollback(RollbackRequest {
                            task: "race".into(),
                        })
                        .await;
                    assert!(
                        matches!(code(r), Code::Ok | Code::FailedPrecondition),
                        "rollback"
                    );
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let store = PgHeadStore::open(db.url(), None).unwrap();
    let active = store.active("race").unwrap().expect("an active version");
    store.load("race", active).unwrap();
    // Both replicas settle on it.
    until_served(&a, "race", active, Duration::from_secs(2)).await;
    until_served(&b, "race", active, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_fails_no_classify_and_replicas_catch_up() {
    let db = TestDatabase::create();
    let (proxy, via_proxy) = proxied(&db).await;
    let env = [("POLYHEAD__STORE__POLL_MS", "200")];
    let server = Arc::new(Server::start_on_url(&via_proxy, &env));
    server.wait_serving().await;
    let (fp, dim) = fingerprint(&server).await;
    server
        .admin()
        .await
        .register_head(upload(&artifact("steady", &fp, dim), true))
        .await
        .unwrap();
    until_served(&server, "steady", 1, Duration::from_secs(2)).await;

    // Load: 4 callers classifying unique texts until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut callers = Vec::new();
    for c in 0..4 {
        let (server, stop, ok, failed) = (server.clone(), stop.clone(), ok.clone(), failed.clone());
        callers.push(tokio::spawn(async move {
            let mut client = server.inference().await;
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let r = client
                    .classify(ClassifyRequest {
                        task: "steady".into(),
                        texts: texts(&format!("outage caller {c} call {i}"), 1),
                        top_k: 1,
                        ..Default::default()
                    })
                    .await;
                match r {
                    Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                    Err(s) => {
                        eprintln!("classify failed during the outage: {s:?}");
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
        }));
    }
    eventually(10, "the callers are answered", || {
        ok.load(Ordering::SeqCst) > 0
    })
    .await;

    // The database goes away.
    proxy.cut();
    let s = server.clone();
    eventually(10, "polyhead_store_up drops to 0", || {
        s.metric("polyhead_store_up") == 0.0
    })
    .await;
    assert_eq!(
        health(&server, "polyhead.v1.Registry").await,
        ServingStatus::NotServing
    );
    assert_eq!(
        health(&server, "polyhead.v1.Inference").await,
        ServingStatus::Serving
    );
    // An admin change while the store is down fails cleanly with UNAVAILABLE.
    let r = server
        .admin()
        .await
        .register_head(upload(&artifact("steady", &fp, dim), true))
        .await;
    assert_eq!(code(r), Code::Unavailable);
    // Meanwhile another writer (e.g. a training Job) adds version 2 directly.
    let direct = PgHeadStore::open(db.url(), None).unwrap();
    let v2 = direct
        .put_and_activate(&artifact("steady", &fp, dim), true)
        .unwrap();
    // Two more failed syncs after v2 was written: the watcher looked, and kept v1.
    let failed_syncs = || server.metric("polyhead_store_syncs_total{outcome=\"error\"}");
    let seen = failed_syncs();
    eventually(20, "two more failed store syncs", || {
        failed_syncs() >= seen + 2.0
    })
    .await;
    assert_eq!(
        served_version(&server, "steady").await,
        1,
        "still the last heads"
    );

    // The database comes back: the replica catches up on its own.
    proxy.restore();
    let took = until_served(&server, "steady", v2, Duration::from_secs(5)).await;
    eprintln!("caught up {took:?} after the database returned");
    let s = server.clone();
    eventually(5, "polyhead_store_up back to 1", || {
        s.metric("polyhead_store_up") == 1.0
    })
    .await;
    assert_eq!(
        health(&server, "polyhead.v1.Registry").await,
        ServingStatus::Serving
    );

    stop.store(true, Ordering::SeqCst);
    for c in callers {
        c.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    eprintln!("{ok} classify calls during the test, {failed} failed");
    assert_eq!(failed, 0);
    assert!(ok > 20, "too little load to mean anything: {ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_are_logged_with_their_id_and_admin_changes_audited() {
    let db = TestDatabase::create();
    let server = Server::start_on_url(
        db.url(),
        &[
            ("POLYHEAD__LOG__FORMAT", "json"),
            (
                "POLYHEAD_LOG",
                "warn,polyhead::access=info,polyhead::audit=info",
            ),
        ],
    );
    server.wait_serving().await;
    let (fp, dim) = fingerprint(&server).await;
    server
        .admin()
        .await
        .register_head(upload(&artifact("logged", &fp, dim), true))
        .await
        .unwrap();
    until_served(&server, "logged", 1, Duration::from_secs(2)).await;
    let mut client = server.inference().await;
    let mut request = tonic::Request::new(ClassifyRequest {
        task: "logged".into(),
        texts: vec!["hello there".into()],
        top_k: 1,
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-request-id", "req-e2e-42".parse().unwrap());
    request.metadata_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let response = client.classify(request).await.unwrap();
    assert_eq!(
        response.metadata().get("x-request-id").unwrap(),
        "req-e2e-42",
        "the request id is echoed"
    );
    // A request without an id gets one, echoed too; errors carry it as well.
    let err = client
        .classify(ClassifyRequest {
            task: "nope".into(),
            texts: vec!["x".into()],
            top_k: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        err.metadata().get("x-request-id").map(|v| v.len()),
        Some(32)
    );

    let lines = || -> Vec<serde_json::Value> {
        server
            .log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    eventually(5, "the access line", || {
        lines().iter().any(|l| l["request_id"] == "req-e2e-42")
    })
    .await;
    let all = lines();
    let access = all
        .iter()
        .find(|l| l["request_id"] == "req-e2e-42")
        .unwrap();
    assert_eq!(access["target"], "polyhead::access");
    assert_eq!(access["rpc"], "Classify");
    assert_eq!(access["task"], "logged");
    assert_eq!(access["head_version"], "1");
    assert_eq!(access["code"], "OK");
    assert_eq!(
        access["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
    assert!(access["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(all
        .iter()
        .any(|l| l["rpc"] == "Classify" && l["code"] == "NOT_FOUND" && l["task"] == "nope"));
    let audit = all
        .iter()
        .find(|l| l["target"] == "polyhead::audit")
        .expect("an audit line for RegisterHead");
    assert_eq!(audit["action"], "RegisterHead");
    assert_eq!(audit["task"], "logged");
    assert_eq!(audit["version"], "1");
    assert_eq!(audit["code"], "OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_copy_round_trips_folder_postgres_folder_byte_for_byte() {
    // A folder store made the way users make one: a server registering heads.
    let dirs = tempfile::tempdir().unwrap();
    let (src, dst) = (dirs.path().join("src"), dirs.path().join("dst"));
    {
        let server = Server::start_on(&src, &[]);
        server.wait_serving().await;
        let (fp, dim) = fingerprint(&server).await;
        let mut admin = server.admin().await;
        for (task, n) in [("alpha", 3), ("beta", 1)] {
            for i in 0..n {
                admin
                    .register_head(upload(&artifact(task, &fp, dim), i != 1))
                    .await
                    .unwrap();
            }
        }
    }
    let db = TestDatabase::create();
    let (src_s, dst_s) = (src.display().to_string(), dst.display().to_string());
    let there: serde_json::Value = serde_json::from_str(&cli(
        &["store", "copy", "--from", &src_s, "--to", db.url()],
        None,
    ))
    .unwrap();
    assert_eq!(there["tasks"], 2);
    assert_eq!(there["versions_copied"], 4);
    assert!(
        there["to"].as_str().unwrap().starts_with("postgres://"),
        "{there}"
    );
    // `polyhead tasks` reads the database store like a folder.
    let listed = cli(&["tasks", "--store", db.url()], None);
    assert!(
        listed.contains(r#""task":"alpha""#) && listed.contains(r#""active_version":3"#),
        "{listed}"
    );
    cli(&["store", "copy", "--from", db.url(), "--to", &dst_s], None);
    assert_eq!(
        tree(&src).unwrap(),
        tree(&dst).unwrap(),
        "folder -> PostgreSQL -> folder changed bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_command_exits_0_only_when_serving() {
    let server = Server::start(&[]);
    server.wait_serving().await;
    let out = cli(&["health", "--addr", &server.addr], None);
    assert_eq!(out.trim(), "SERVING");
    // Nothing listens: exit 5 (unreachable) with the reason.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let status = std::process::Command::new(polyhead_e2e::binary())
        .args([
            "health",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--timeout-ms",
            "1000",
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_while_the_database_is_down_waits_then_serves() {
    let db = TestDatabase::create();
    let (proxy, via_proxy) = proxied(&db).await;
    proxy.cut();
    let mut server = Server::start_on_url(&via_proxy, &[("POLYHEAD_LOG", "warn")]);
    // The port opens at once; the backbone loads; the store cannot be opened.
    let start = Instant::now();
    while !server.log_text().contains("head store unreachable") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no 'unreachable' warning: {}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It retries (each failed open counted) instead of exiting.
    let failed_opens = || server.metric("polyhead_store_syncs_total{outcome=\"error\"}");
    eventually(20, "two failed store opens", || failed_opens() >= 2.0).await;
    assert!(
        server.child_running(),
        "the replica exited instead of waiting"
    );
    assert_eq!(health(&server, "").await, ServingStatus::NotServing);
    proxy.restore();
    let start = Instant::now();
    while health(&server, "").await != ServingStatus::Serving {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not SERVING 10 s after the database returned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("SERVING {:?} after the database returned", start.elapsed());
}
