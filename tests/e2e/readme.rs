//! The README's commands, run as written against a real server.
use polyhead_e2e::{register, root, Server};

/// The `curl` lines of the README's HTTP/JSON block, continuation lines joined.
fn readme_curls() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("### HTTP/JSON")
        .nth(1)
        .expect("README has an HTTP/JSON section");
    let block = section
        .split("```bash")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a bash block");
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        let line = line.trim_end();
        if line.trim_start().starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_http_examples_work_as_written() {
    let curls = readme_curls();
    assert!(curls.len() >= 8, "{curls:?}");
    assert!(curls.iter().all(|c| c.starts_with("curl -s ")), "{curls:?}");
    let server = Server::start(&[]);
    server.wait_serving().await;
    register(&server, &["spam", "reviews"]).await;
    for c in &curls {
        // -f: an HTTP error fails the command; the server's address for the default.
        let cmd = c
            .replacen("curl -s ", "curl -sS -f ", 1)
            .replace("127.0.0.1:8080", &server.http_addr);
        let out = std::process::Command::new("bash")
            .args(["-c", &cmd])
            .output()
            .expect("bash and curl");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{cmd}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{cmd}: not JSON ({e}): {stdout}"));
        assert!(json.get("error").is_none(), "{cmd}: {stdout}");
    }
}

/// The lines of the README's "Calling it" block that start with `target/release/polyhead`
/// or `curl` (continuation lines joined).
fn calling_it_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("## Calling it")
        .nth(1)
        .expect("a Calling it section");
    let block = section
        .split("```bash")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a bash block");
    block
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("target/release/polyhead") || l.starts_with("curl"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_calling_it_commands_work_as_written() {
    let commands = calling_it_commands();
    assert!(commands.len() >= 3, "{commands:?}");
    let server = Server::start(&[]);
    server.wait_serving().await;
    register(&server, &["spam", "reviews"]).await;
    for c in &commands {
        // The README's commands use the default ports; point them at this server.
        let cmd = c
            .replace(
                "target/release/polyhead classify",
                &format!("target/release/polyhead classify --addr {}", server.addr),
            )
            .replace("127.0.0.1:9464", &server.metrics_addr)
            .replace(
                "target/release/polyhead",
                &polyhead_e2e::binary().display().to_string(),
            );
        let out = std::process::Command::new("bash")
            .args(["-c", &format!("set -o pipefail; {cmd}")])
            .current_dir(root())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !stdout.trim().is_empty(),
            "{cmd}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
