//! deploy/ against a live server: `promtool check metrics` on a real scrape, and every
//! series an alert rule or a dashboard panel queries is one the server exports. Needs
//! promtool on PATH (`scripts/deploy-checks.sh --tools-only` installs it; the test
//! fails without it).
use std::{
    collections::BTreeSet,
    io::Write,
    process::{Command, Stdio},
};

use polyhead_api::v1::ClassifyRequest;
use polyhead_e2e::{register, root, texts, Server};

/// Metric names (`polyhead_...`) mentioned in `text`, histogram suffixes removed.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("polyhead_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        names.insert(base.to_owned());
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_scrape_passes_promtool_and_feeds_every_alert_and_panel() {
    let server = Server::start(&[]);
    server.wait_serving().await;
    register(&server, &["deploy"]).await;
    // Traffic, so every series exists: a success, an error, a batch.
    let mut c = server.inference().await;
    c.classify(ClassifyRequest {
        task: "deploy".into(),
        texts: texts("scrape", 3),
        top_k: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let _ = c
        .classify(ClassifyRequest {
            task: "missing".into(),
            texts: texts("scrape", 1),
            top_k: 1,
            ..Default::default()
        })
        .await;
    // The watcher has synced at least once (store_up is set by it).
    polyhead_e2e::eventually(10, "a store sync", || {
        server.metrics().contains("polyhead_store_syncs_total")
    })
    .await;
    let scrape = server.metrics();
    let body = scrape
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or(&scrape)
        .to_owned();

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH: run scripts/deploy-checks.sh --tools-only");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let exported = metric_names(&body);
    let deploy = root().join("deploy");
    for file in ["prometheus/alerts.yml", "grafana/polyhead.json"] {
        let text = std::fs::read_to_string(deploy.join(file)).unwrap();
        let wanted = metric_names(&text);
        assert!(!wanted.is_empty(), "{file} names no polyhead metric");
        let missing: Vec<_> = wanted.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} queries series the server does not export: {missing:?}"
        );
    }
}
