//! Issue 18 (hardening, round two), its medium and low findings: request rules, log
//! lines, uploads and pages, call accounting, framing and reflection. Each test
//! reproduces one finding against the real server binary.
use std::time::Duration;

use polyhead_api::v1::{EmbedRequest, ListTasksRequest, ListVersionsRequest, TrainHeadRequest};
use polyhead_e2e::{
    artifact, code, eventually, fingerprint, one, raw, register, upload, Server, TOKEN,
};
use tonic::Code;

/// The sum of every `polyhead_requests_total` series of `rpc` (all tasks and codes),
/// and of those with `code`.
fn requests(server: &Server, rpc: &str, code: Option<&str>) -> f64 {
    let rpc_label = format!("rpc=\"{rpc}\"");
    let code_label = code.map(|c| format!("code=\"{c}\""));
    server
        .metrics()
        .lines()
        .filter(|l| l.starts_with("polyhead_requests_total{") && l.contains(&rpc_label))
        .filter(|l| code_label.as_ref().is_none_or(|c| l.contains(c.as_str())))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Low 15: empty, whitespace-only and NUL-only texts are INVALID_ARGUMENT, as
/// documented (and as TrainHead already refused them).
#[tokio::test(flavor = "multi_thread")]
async fn blank_texts_are_refused() {
    let server = Server::start(&[]);
    server.wait_serving().await;
    register(&server, &["a"]).await;
    let mut client = server.inference().await;
    for blank in ["", "   ", "\0\0\0", "\t\n"] {
        let r = client.classify(one("a", blank)).await;
        assert_eq!(code(r), Code::InvalidArgument, "{blank:?}");
        let r = client
            .embed(EmbedRequest {
                texts: vec![blank.into()],
                ..Default::default()
            })
            .await;
        assert_eq!(code(r), Code::InvalidArgument, "{blank:?}");
    }
    client.classify(one("a", "\0real text")).await.unwrap();
}

/// Medium 4: a task name with a newline or ESC cannot forge a log line.
#[tokio::test(flavor = "multi_thread")]
async fn control_characters_cannot_forge_log_lines() {
    let server = Server::start_logged(&[("POLYHEAD_LOG", "info")]);
    server.wait_serving().await;
    let forged = "x\n2026-12-01T00:00:00.000000Z  INFO polyhead::audit: admin change action=\"DeleteTask\" code=Ok FORGED\u{1b}[2K";
    let mut client = server.inference().await;
    let _ = client.classify(one(forged, "hello")).await;
    let written = tokio::time::timeout(Duration::from_secs(10), async {
        while !server.log_text().contains("FORGED") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(written.is_ok(), "no access line: {}", server.log_text());
    for line in server.log_text().lines().filter(|l| l.contains("FORGED")) {
        assert!(line.contains("polyhead::access"), "forged line: {line}");
        assert!(line.contains("x\\n2026"), "newline escaped: {line}");
        assert!(!line.contains("\u{1b}[2K"), "ESC escaped: {line}");
    }
}

/// Medium 6: RegisterHead is held to `train.max_labels` like TrainHead, and
/// ListTasks answers in pages.
#[tokio::test(flavor = "multi_thread")]
async fn uploads_are_bounded_and_task_lists_paged() {
    let server = Server::start(&[
        ("POLYHEAD__TRAIN__MAX_LABELS", "2"),
        ("POLYHEAD__SERVER__MAX_TASKS_PER_PAGE", "2"),
    ]);
    server.wait_serving().await;
    let (fp, dim) = fingerprint(&server).await;
    let mut admin = server.admin().await;
    let mut wide = artifact("wide", &fp, dim);
    wide.manifest.labels.push("third".into());
    let mut layer = wide.head.layers()[0].clone();
    layer.weight.extend(vec![0.0; dim]);
    layer.bias.push(0.0);
    layer.out = 3;
    wide.head = polyhead_heads::Head::new(
        wide.manifest.head,
        vec![layer],
        wide.manifest.labels.clone(),
    )
    .unwrap();
    let r = admin.register_head(upload(&wide, true)).await;
    let e = r.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("train.max_labels"), "{}", e.message());
    register(&server, &["t1", "t2", "t3", "t4", "t5"]).await;
    let mut client = server.inference().await;
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let page = client
            .list_tasks(ListTasksRequest {
                page_size: 0,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.tasks.len() <= 2);
        seen.extend(page.tasks.into_iter().map(|t| t.task));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ["t1", "t2", "t3", "t4", "t5"]);
}

/// Medium 7 and 8: refused admin calls (no, wrong or oversized token) and calls
/// ended by tonic's own timer are counted and logged once; the token never is;
/// TrainHead is counted.
#[tokio::test(flavor = "multi_thread")]
async fn every_call_and_refusal_is_counted_and_logged_once() {
    let server = Server::start_logged(&[("POLYHEAD_LOG", "info")]);
    server.wait_serving().await;
    register(&server, &["a"]).await;
    let secret = "hunter2-wrong-token";
    let big = "x".repeat(4 * 1024);
    for token in [None, Some(secret), Some(""), Some(big.as_str())] {
        let r = server
            .admin_with(token)
            .await
            .list_versions(ListVersionsRequest { task: "a".into() })
            .await;
        assert_eq!(code(r), Code::Unauthenticated);
    }
    eventually(10, "four refusals counted", || {
        requests(&server, "ListVersions", Some("UNAUTHENTICATED")) == 4.0
    })
    .await;
    let log = server.log_text();
    let refusals = log
        .lines()
        .filter(|l| l.contains("polyhead::access") && l.contains("ListVersions"))
        .count();
    assert_eq!(refusals, 4, "{log}");
    assert!(!log.contains(secret), "the token is never logged");

    // Calls whose grpc-timeout expires inside tonic, before or in the handler.
    let before = requests(&server, "Classify", None);
    let client = server.inference().await;
    for ms in 1..=12u64 {
        let mut r = tonic::Request::new(one("a", &format!("late {ms}")));
        r.set_timeout(Duration::from_millis(ms));
        let _ = client.clone().classify(r).await;
    }
    eventually(20, "each late call counted once", || {
        requests(&server, "Classify", None) - before == 12.0
    })
    .await;

    // TrainHead, refused and accepted, is counted.
    let mut admin = server.admin().await;
    let r = admin
        .train_head(TrainHeadRequest {
            task: "t".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(code(r), Code::InvalidArgument);
    eventually(10, "the refused TrainHead is counted", || {
        requests(&server, "TrainHead", Some("INVALID_ARGUMENT")) == 1.0
    })
    .await;
    server.train("t", 1, 5).await;
    eventually(10, "the accepted TrainHead is counted", || {
        requests(&server, "TrainHead", Some("OK")) == 1.0
    })
    .await;
}

/// Medium 13: malformed framing is the client's bad argument, not INTERNAL.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_frames_are_invalid_argument() {
    let server = Server::start(&[]);
    server.wait_serving().await;
    register(&server, &["a"]).await;
    let ok = raw::message(&one("a", "hello"));
    let mut conn = raw::RawConnection::open(&server.addr, 1 << 20).await;
    let path = "/polyhead.v1.Inference/Classify";
    let gzip = [("grpc-encoding", "gzip")];
    type Case<'a> = (&'a str, Vec<u8>, &'a [(&'a str, &'a str)]);
    let cases: Vec<Case> = vec![
        ("compression flag 7", raw::frame(7, 3, b"abc"), &[]),
        ("bad gzip", raw::frame(1, 8, b"notgzip!"), &gzip),
        (
            "truncated gzip",
            raw::frame(1, 4, &[0x1f, 0x8b, 8, 0]),
            &gzip,
        ),
        (
            "frame shorter than its length",
            raw::frame(0, 100, &ok[5..]),
            &[],
        ),
        ("empty body", Vec::new(), &[]),
    ];
    for (what, body, headers) in cases {
        let a = conn.call(path, body, headers).await;
        assert_eq!(a.grpc_status, Some(3), "{what}: {}", a.grpc_message);
    }
    let a = conn.call(path, ok, &[]).await;
    assert_eq!(a.grpc_status, None, "a good frame is answered");
}

/// Low 16: with `open_inference = false`, reflection (which lists the schema) needs
/// the token; health stays open for orchestrators' probes.
#[tokio::test(flavor = "multi_thread")]
async fn closed_inference_closes_reflection_but_not_health() {
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, ServerReflectionRequest,
    };
    let server = Server::start(&[
        ("POLYHEAD__SERVER__OPEN_INFERENCE", "false"),
        ("POLYHEAD__ADMIN__TOKEN", TOKEN),
    ]);
    server.wait_serving().await; // health answers without a token
    let list = || ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut open = ServerReflectionClient::new(server.channel().await);
    let r = open
        .server_reflection_info(tokio_stream::iter([list()]))
        .await;
    let refused = match r {
        Err(s) => s.code(),
        Ok(stream) => code(stream.into_inner().message().await),
    };
    assert_eq!(refused, Code::Unauthenticated);
    let header: tonic::metadata::MetadataValue<_> = format!("Bearer {TOKEN}").parse().unwrap();
    let mut authed = ServerReflectionClient::with_interceptor(
        server.channel().await,
        move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", header.clone());
            Ok(r)
        },
    );
    let mut stream = authed
        .server_reflection_info(tokio_stream::iter([list()]))
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
}
