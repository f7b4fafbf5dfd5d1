//! The HTTP/JSON API, through a real HTTP client: the same answers as gRPC, the
//! KServe v2 and OpenAI dialects, the documented errors, auth, limits and metrics.
use base64::Engine as _;
use polyhead_api::v1::{ClassifyRequest, EmbedRequest};
use polyhead_e2e::{
    http::{get, post, request},
    register, Server, TOKEN,
};
use serde_json::json;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[tokio::test(flavor = "multi_thread")]
async fn http_answers_as_grpc_does_in_all_three_dialects() {
    let server = Server::start_logged(&[("POLYHEAD_LOG", "info")]);
    server.wait_serving().await;
    // Two versions of "a" (2 active), one of "b".
    register(&server, &["a", "a", "b"]).await;
    let url = server.http_url();
    let texts = vec![
        "Claim your free prize now!!!".to_string(),
        "Agenda for Monday".into(),
    ];

    assert_eq!(get(&format!("{url}/health/live")).await.status, 200);
    let ready = get(&format!("{url}/health/ready")).await;
    assert_eq!(
        (ready.status, ready.json()["status"].clone()),
        (200, json!("ready"))
    );
    assert_eq!(get(&format!("{url}/v2/health/ready")).await.status, 200);

    // Classify: the gRPC answer, field for field; the request id is echoed.
    let mut grpc = server.inference().await;
    let want = grpc
        .classify(ClassifyRequest {
            task: "a".into(),
            texts: texts.clone(),
            top_k: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let got = request(
        "POST",
        &format!("{url}/v1/tasks/a/classify"),
        &[("x-request-id", "http-e2e-1")],
        Some(&json!({"texts": texts, "top_k": 2}).to_string()),
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.header("x-request-id"), "http-e2e-1");
    assert_eq!(got.header("content-type"), "application/json");
    let got = got.json();
    assert_eq!(got["task"], "a");
    assert_eq!(got["head_version"], 2);
    for (g, w) in got["results"].as_array().unwrap().iter().zip(&want.results) {
        assert_eq!(g["label"], w.label.as_str());
        assert!(close(g["score"].as_f64().unwrap(), w.score as f64));
        assert_eq!(g["scores"].as_array().unwrap().len(), 2);
    }

    // ClassifyMulti over every live task.
    let multi = post(&format!("{url}/v1/classify"), &json!({"texts": texts})).await;
    assert_eq!(multi.status, 200, "{}", multi.body);
    let tasks: Vec<_> = multi.json()["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["task"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tasks.len(), 2, "{tasks:?}");

    // Embed and OpenAI's embeddings: the gRPC rows; base64 decodes to them.
    let rows = grpc
        .embed(EmbedRequest {
            texts: texts.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let embed = post(&format!("{url}/v1/embed"), &json!({"texts": texts}))
        .await
        .json();
    assert_eq!(embed["dim"], rows.dim);
    let openai = post(
        &format!("{url}/v1/embeddings"),
        &json!({"input": texts, "model": "x"}),
    )
    .await;
    assert_eq!(openai.status, 200, "{}", openai.body);
    let openai = openai.json();
    assert_eq!(openai["object"], "list");
    assert!(openai["usage"]["prompt_tokens"].as_u64().unwrap() >= 4);
    let b64 = post(
        &format!("{url}/v1/embeddings"),
        &json!({"input": texts[0], "encoding_format": "base64"}),
    )
    .await
    .json();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(decoded, rows.embeddings[0].values);
    for (i, want) in rows.embeddings.iter().enumerate() {
        let a: Vec<f32> = serde_json::from_value(embed["embeddings"][i].clone()).unwrap();
        let b: Vec<f32> = serde_json::from_value(openai["data"][i]["embedding"].clone()).unwrap();
        assert_eq!(a, want.values);
        assert_eq!(b, want.values);
        assert_eq!(openai["data"][i]["index"], i);
    }

    // Tasks.
    let list = get(&format!("{url}/v1/tasks?page_size=1")).await.json();
    assert_eq!(list["tasks"][0]["task"], "a");
    assert_eq!(list["next_page_token"], "a");
    let page2 = get(&format!("{url}/v1/tasks?page_size=1&page_token=a"))
        .await
        .json();
    assert_eq!(page2["tasks"][0]["task"], "b");
    assert_eq!(page2["next_page_token"], "");
    let task = get(&format!("{url}/v1/tasks/a")).await.json();
    assert_eq!(task["versions"], json!([1, 2]));
    assert_eq!(task["active_version"], 2);

    // KServe v2: metadata, readiness, infer (the active version answers; another
    // stored one is refused with what to do; a missing one is NOT_FOUND).
    let meta = get(&format!("{url}/v2/models/a")).await.json();
    assert_eq!(meta["versions"], json!(["1", "2"]));
    assert_eq!(meta["inputs"][0]["datatype"], "BYTES");
    assert_eq!(
        get(&format!("{url}/v2/models/a/ready")).await.json()["ready"],
        true
    );
    assert_eq!(
        get(&format!("{url}/v2/models/nosuch/ready")).await.status,
        404
    );
    let infer = json!({"id": "req-7", "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": texts}],
                       "parameters": {"top_k": 2}});
    let out = post(&format!("{url}/v2/models/a/infer"), &infer).await;
    assert_eq!(out.status, 200, "{}", out.body);
    let out = out.json();
    assert_eq!(
        (
            out["model_name"].clone(),
            out["model_version"].clone(),
            out["id"].clone()
        ),
        (json!("a"), json!("2"), json!("req-7"))
    );
    let by_name = |n: &str| {
        out["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(
        by_name("label")["data"],
        json!([want.results[0].label, want.results[1].label])
    );
    assert_eq!(by_name("score")["shape"], json!([2]));
    assert_eq!(by_name("top_scores")["shape"], json!([2, 2]));
    assert_eq!(
        post(&format!("{url}/v2/models/a/versions/2/infer"), &infer)
            .await
            .status,
        200
    );
    let old = post(&format!("{url}/v2/models/a/versions/1/infer"), &infer).await;
    assert_eq!(
        (old.status, old.json()["code"].clone()),
        (400, json!("FAILED_PRECONDITION"))
    );
    assert!(
        old.json()["error"].as_str().unwrap().contains("activate"),
        "{}",
        old.body
    );
    assert_eq!(
        post(&format!("{url}/v2/models/a/versions/9/infer"), &infer)
            .await
            .status,
        404
    );

    // The access log has the HTTP calls, with their request id.
    let log = server.log_text();
    assert!(
        log.lines().any(|l| l.contains("polyhead::access")
            && l.contains("request_id=http-e2e-1")
            && l.contains("rpc=\"Classify\"")),
        "no access line with the request id:\n{log}"
    );
    // Each head counts the texts it classified, whichever RPC or protocol asked.
    assert!(server.metric("polyhead_task_texts_total{task=\"a\"}") >= 10.0);
    // And the metrics count them under the RPC they map to.
    assert!(
        server.metric("polyhead_requests_total{rpc=\"Classify\",task=\"a\",code=\"OK\"}") >= 4.0
    );

    // The OpenAPI document served is the checked-in one.
    let doc = get(&format!("{url}/openapi.json")).await;
    assert_eq!(doc.status, 200);
    let file =
        std::fs::read_to_string(polyhead_e2e::root().join("crates/server/openapi.json")).unwrap();
    assert_eq!(
        doc.json(),
        serde_json::from_str::<serde_json::Value>(&file).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_errors_are_json_with_the_documented_codes() {
    let server = Server::start(&[("POLYHEAD__SERVER__MAX_MESSAGE_BYTES", "65536")]);
    server.wait_serving().await;
    register(&server, &["a"]).await;
    let url = server.http_url();
    let expect = |a: polyhead_e2e::http::Answer, status: u16, code: &str, says: &str| {
        assert_eq!(a.status, status, "{}", a.body);
        let j = a.json();
        assert_eq!(j["code"], code, "{}", a.body);
        assert!(
            j["error"].as_str().unwrap().contains(says),
            "{:?} lacks {says:?}",
            a.body
        );
    };
    let classify = format!("{url}/v1/tasks/a/classify");
    expect(
        post(
            &format!("{url}/v1/tasks/nosuch/classify"),
            &json!({"texts": ["x"]}),
        )
        .await,
        404,
        "NOT_FOUND",
        "nosuch",
    );
    expect(
        post(&classify, &json!({"texts": ["   "]})).await,
        400,
        "INVALID_ARGUMENT",
        "empty",
    );
    expect(
        post(&classify, &json!({"text": ["x"]})).await,
        400,
        "INVALID_ARGUMENT",
        "texts",
    );
    expect(
        request("POST", &classify, &[], Some("{not json")).await,
        400,
        "INVALID_ARGUMENT",
        "JSON",
    );
    let no_type = request(
        "POST",
        &classify,
        &[("content-type", "text/plain")],
        Some("{}"),
    )
    .await;
    // (the client adds application/json when a body is given; this overrides it)
    assert!(
        no_type.status == 415 || no_type.status == 400,
        "{}",
        no_type.body
    );
    let big = json!({"texts": ["word ".repeat(20_000)]});
    expect(
        post(&classify, &big).await,
        413,
        "RESOURCE_EXHAUSTED",
        "max_message_bytes",
    );
    let many = json!({"texts": vec!["x"; 300]});
    expect(
        post(&classify, &many).await,
        400,
        "INVALID_ARGUMENT",
        "max_texts",
    );
    expect(
        get(&format!("{url}/v1/nope")).await,
        404,
        "NOT_FOUND",
        "openapi.json",
    );
    let wrong = get(&classify).await;
    assert_eq!(wrong.status, 405, "{}", wrong.body);
    assert_eq!(wrong.json()["code"], "UNIMPLEMENTED");
    expect(
        post(
            &format!("{url}/v1/embeddings"),
            &json!({"input": [[1, 2, 3]]}),
        )
        .await,
        400,
        "INVALID_ARGUMENT",
        "token ids",
    );
    expect(
        post(
            &format!("{url}/v1/embeddings"),
            &json!({"input": "x", "dimensions": 3}),
        )
        .await,
        400,
        "INVALID_ARGUMENT",
        "dimensions",
    );
    let bad_infer =
        json!({"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": ["x"]}]});
    expect(
        post(&format!("{url}/v2/models/a/infer"), &bad_infer).await,
        400,
        "INVALID_ARGUMENT",
        "shape",
    );
    let fp = json!({"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]});
    expect(
        post(&format!("{url}/v2/models/a/infer"), &fp).await,
        400,
        "INVALID_ARGUMENT",
        "BYTES",
    );
    // gRPC answers on its own port; HTTP on its own: nothing above was served twice.
    assert!(
        server.metric(
            "polyhead_requests_total{rpc=\"Classify\",task=\"unknown\",code=\"NOT_FOUND\"}"
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_needs_the_token_when_inference_is_protected() {
    let server = Server::start(&[("POLYHEAD__SERVER__OPEN_INFERENCE", "false")]);
    server.wait_serving().await;
    let url = server.http_url();
    let body = json!({"texts": ["x"]}).to_string();
    let classify = format!("{url}/v1/tasks/a/classify");
    let refused = request("POST", &classify, &[], Some(&body)).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(refused.json()["code"], "UNAUTHENTICATED");
    assert_eq!(refused.header("www-authenticate"), "Bearer");
    let wrong = request(
        "POST",
        &classify,
        &[("authorization", "Bearer nope")],
        Some(&body),
    )
    .await;
    assert_eq!(wrong.status, 401);
    let bearer = format!("Bearer {TOKEN}");
    // Past the token check: the task does not exist.
    let past = request(
        "POST",
        &classify,
        &[("authorization", &bearer)],
        Some(&body),
    )
    .await;
    assert_eq!(past.status, 404, "{}", past.body);
    let info = request(
        "GET",
        &format!("{url}/v1/info"),
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(info.status, 200, "{}", info.body);
    for path in ["/v1/tasks", "/v1/info", "/v2/models/a"] {
        assert_eq!(get(&format!("{url}{path}")).await.status, 401, "{path}");
    }
    // Probes stay open.
    assert_eq!(get(&format!("{url}/health/ready")).await.status, 200);
    // Refused calls are counted (and the token is never a label or logged).
    assert!(
        server
            .metric("polyhead_requests_total{rpc=\"Classify\",task=\"\",code=\"UNAUTHENTICATED\"}")
            >= 2.0
    );
    assert!(!server.metrics().contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_listener_serves_get_metrics_only_with_process_metrics() {
    let server = Server::start(&[]);
    server.wait_serving().await;
    let url = format!("http://{}", server.metrics_addr);
    let m = get(&format!("{url}/metrics")).await;
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type").starts_with("text/plain"),
        "{:?}",
        m.headers
    );
    let version = format!(
        "polyhead_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(m.body.contains(&version), "{}", m.body);
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        let value: f64 = m
            .body
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {name}"))
            .trim()
            .parse()
            .unwrap();
        assert!(value > 0.0, "{name} {value}");
    }
    // The process's own RSS, as /proc reports it.
    let rss: f64 = m
        .body
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    let kib = server.rss_kib() as f64;
    assert!((rss / 1024.0 - kib).abs() / kib < 0.2, "{rss} vs {kib} KiB");
    // Admin calls name their (live) task in the metrics.
    register(&server, &["a", "a"]).await;
    server
        .admin()
        .await
        .activate_version(polyhead_api::v1::ActivateVersionRequest {
            task: "a".into(),
            version: 1,
        })
        .await
        .unwrap();
    assert_eq!(
        server.metric("polyhead_requests_total{rpc=\"ActivateVersion\",task=\"a\",code=\"OK\"}"),
        1.0
    );
    // The first upload made the task live; the second is counted under its name.
    assert_eq!(
        server.metric("polyhead_requests_total{rpc=\"RegisterHead\",task=\"a\",code=\"OK\"}"),
        1.0
    );
    for path in ["/", "/healthz", "/metrics/x"] {
        assert_eq!(get(&format!("{url}{path}")).await.status, 404, "{path}");
    }
    assert_eq!(
        request("POST", &format!("{url}/metrics"), &[], Some("{}"))
            .await
            .status,
        405
    );
}
