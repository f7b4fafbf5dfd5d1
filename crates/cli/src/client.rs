//! `polyhead serve` and the small gRPC client `polyhead classify`.

use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use clap::Args;
use polyhead_api::v1::{inference_client::InferenceClient, ClassifyRequest};
use polyhead_settings::Settings;

use crate::Failure;

/// Arguments of `polyhead serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// gRPC listen address (server.addr).
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Prometheus listen address (server.metrics_addr).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// HTTP/JSON API listen address (server.http_addr; "" = off).
    #[arg(long, value_name = "HOST:PORT")]
    pub http_addr: Option<String>,
    /// Head store: a folder, or postgres://user:password@host:5432/db (store.url).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Print the effective configuration as TOML (what --config reads) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// With --print-config: JSON instead of TOML.
    #[arg(long, requires = "print_config")]
    pub json: bool,
    #[command(flatten)]
    pub backbone: crate::BackboneArgs,
}

impl ServeArgs {
    /// `(key, value)` overrides for [`Settings::load`].
    pub fn overrides(&self) -> Vec<(&'static str, String)> {
        let mut o = self.backbone.overrides();
        if let Some(a) = &self.addr {
            o.push(("server.addr", a.clone()));
        }
        if let Some(a) = &self.metrics_addr {
            o.push(("server.metrics_addr", a.clone()));
        }
        if let Some(a) = &self.http_addr {
            o.push(("server.http_addr", a.clone()));
        }
        if let Some(s) = &self.store {
            o.push(("store.url", s.clone()));
        }
        o
    }
}

/// `polyhead serve`.
pub fn serve(settings: Settings, args: &ServeArgs) -> Result<()> {
    if args.print_config {
        let text = if args.json {
            settings.to_redacted_json() + "\n"
        } else {
            settings.to_redacted_toml()
        };
        crate::pipe_closed(std::io::stdout().lock().write_all(text.as_bytes()))?;
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(polyhead_server::serve(settings))?;
    Ok(())
}

/// Arguments of `polyhead classify`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["texts", "input", "images"])))]
pub struct ClassifyArgs {
    /// Server address (gRPC: server.addr).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// Task name.
    #[arg(long)]
    pub task: String,
    /// Labels per text in `scores` (0 = all).
    #[arg(long, default_value_t = 0)]
    pub top_k: u32,
    /// Bearer token, when the server protects inference.
    #[arg(long, env = "POLYHEAD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Texts to classify (or use --input, or --image).
    pub texts: Vec<String>,
    /// A picture to classify (JPEG, PNG or WebP; repeat for several), for a server
    /// whose backbone reads images. Each output line names its file in "image".
    #[arg(long = "image", value_name = "FILE")]
    pub images: Vec<PathBuf>,
    /// Classify a file (`-` = standard input): JSONL rows with a "text" field (other
    /// fields, such as a label, are copied to the output), CSV with a text column, or
    /// plain text, one text per line. Streamed in batches.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// jsonl, csv or lines (default: by extension, else JSONL when the first line
    /// starts with `{`, else lines).
    #[arg(long, requires = "input")]
    pub input_format: Option<String>,
    /// The column (CSV) or field (JSONL) holding the text.
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Write the predictions here (JSONL, one per input row, in order) instead of
    /// standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Texts per request with --input.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
}

/// One input row: its text and the other fields to carry to the output.
struct Row {
    text: String,
    /// A picture's file, for an image row.
    image: Option<PathBuf>,
    extra: serde_json::Map<String, serde_json::Value>,
}

/// Reads the rows of `path` in `format`, with errors that say what to do.
fn read_rows(path: &Path, format: Option<&str>, column: &str) -> Result<Vec<Row>> {
    let bytes = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        buf
    } else {
        std::fs::read(path).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound {
                Failure::NotFound
            } else {
                Failure::Other
            };
            kind.wrap(anyhow::anyhow!("{}: {e}", path.display()))
        })?
    };
    let bad = |msg: String| Failure::BadInput.wrap(anyhow::anyhow!("{}: {msg}", path.display()));
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("empty file: nothing to classify".into()));
    }
    if bytes.contains(&0) {
        return Err(bad("not a text file (binary)".into()));
    }
    let text = std::str::from_utf8(&bytes).map_err(|e| bad(format!("not UTF-8 text: {e}")))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let format = match format {
        Some(f) => f.to_owned(),
        None => match ext.as_str() {
            "jsonl" | "json" | "ndjson" => "jsonl".into(),
            "csv" => "csv".into(),
            _ if text.trim_start().starts_with('{') => "jsonl".into(),
            _ => "lines".into(),
        },
    };
    let mut rows = Vec::new();
    match format.as_str() {
        "lines" | "txt" | "text" => {
            for line in text.lines() {
                rows.push(Row {
                    text: line.to_owned(),
                    image: None,
                    extra: serde_json::Map::new(),
                });
            }
        }
        "jsonl" | "json" | "ndjson" => {
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let mut obj: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(line)
                        .map_err(|e| bad(format!("line {}: not a JSON object: {e}", i + 1)))?;
                let text = match obj.remove(column) {
                    Some(serde_json::Value::String(t)) => t,
                    Some(_) => {
                        return Err(bad(format!("line {}: {column:?} is not a string", i + 1)))
                    }
                    None => {
                        let keys: Vec<&String> = obj.keys().collect();
                        return Err(bad(format!(
                            "line {}: no {column:?} field (it has {keys:?}); name the text field \
                             with --text-column",
                            i + 1
                        )));
                    }
                };
                rows.push(Row {
                    text,
                    image: None,
                    extra: obj,
                });
            }
        }
        "csv" => {
            let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
            let headers = reader.headers()?.clone();
            let Some(col) = headers.iter().position(|h| h.trim() == column) else {
                let names: Vec<&str> = headers.iter().collect();
                return Err(bad(format!(
                    "the CSV header has {names:?}; no column {column:?}: name the text column \
                     with --text-column"
                )));
            };
            for (i, record) in reader.records().enumerate() {
                let record = record.map_err(|e| bad(format!("row {}: {e}", i + 2)))?;
                let mut extra = serde_json::Map::new();
                for (j, (h, v)) in headers.iter().zip(record.iter()).enumerate() {
                    if j != col {
                        extra.insert(h.to_owned(), serde_json::json!(v));
                    }
                }
                rows.push(Row {
                    text: record.get(col).unwrap_or_default().to_owned(),
                    image: None,
                    extra,
                });
            }
        }
        other => {
            return Err(Failure::BadInput.wrap(anyhow::anyhow!(
                "--input-format {other:?}: use jsonl, csv or lines"
            )))
        }
    }
    if rows.is_empty() {
        return Err(bad("no rows: nothing to classify".into()));
    }
    Ok(rows)
}

/// A gRPC failure as the CLI reports it: the code's name, the server's message, and
/// the exit code of its kind; a transport failure is checked for being an HTTP port.
pub fn rpc_error(addr: &str, s: tonic::Status) -> anyhow::Error {
    use tonic::Code;
    let answers_http = || {
        matches!(
            s.code(),
            Code::Unknown | Code::Unimplemented | Code::Internal | Code::Unavailable
        ) && speaks_http1(addr)
    };
    if answers_http() {
        return Failure::Unreachable.wrap(anyhow::anyhow!(
            "{addr} answers HTTP, not gRPC: is it the metrics port (server.metrics_addr) or the \
             HTTP API (server.http_addr)? gRPC is server.addr (default 127.0.0.1:50051)"
        ));
    }
    Failure::of_code(s.code()).wrap(anyhow::anyhow!(
        "{}: {}",
        polyhead_server::code_name(s.code()),
        s.message()
    ))
}

/// A server address as a URL tonic connects to: `host:port` gets `http://`.
pub fn endpoint_url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// Whether `addr` answers an HTTP/1.1 request with an HTTP/1.1 response (a gRPC
/// port speaks only HTTP/2 and does not).
fn speaks_http1(addr: &str) -> bool {
    use std::io::{Read, Write};
    let hostport = addr
        .split("://")
        .last()
        .unwrap_or(addr)
        .trim_end_matches('/');
    let Ok(addrs) = std::net::ToSocketAddrs::to_socket_addrs(hostport) else {
        return false;
    };
    for a in addrs {
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .is_err()
        {
            continue;
        }
        let mut head = [0u8; 8];
        if s.read_exact(&mut head).is_ok() {
            return head.starts_with(b"HTTP/1.");
        }
    }
    false
}

/// `polyhead classify`: one JSON object per text (or input row), in order.
pub fn classify(args: &ClassifyArgs) -> Result<()> {
    let rows = match &args.input {
        Some(path) => read_rows(path, args.input_format.as_deref(), &args.text_column)?,
        None if !args.images.is_empty() => args
            .images
            .iter()
            .map(|p| Row {
                text: String::new(),
                image: Some(p.clone()),
                extra: serde_json::Map::new(),
            })
            .collect(),
        None => args
            .texts
            .iter()
            .map(|t| Row {
                text: t.clone(),
                image: None,
                extra: serde_json::Map::new(),
            })
            .collect(),
    };

    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let progress = (args.input.is_some() && rows.len() > args.batch).then(|| {
        let bar = if std::io::stderr().is_terminal() {
            indicatif::ProgressBar::new(rows.len() as u64)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "[classify] {wide_bar} {pos}/{len} texts ({elapsed}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let addr = endpoint_url(&args.addr);
    let started = std::time::Instant::now();
    runtime.block_on(async {
        let mut client = InferenceClient::connect(addr.clone()).await.map_err(|e| {
            Failure::Unreachable.wrap(anyhow::anyhow!(
                "cannot reach a gRPC server at {addr} ({e}): is `polyhead serve` running there?"
            ))
        })?;
        for chunk in rows.chunks(args.batch.max(1)) {
            let images = chunk
                .iter()
                .filter_map(|r| r.image.as_ref())
                .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
                .collect::<Result<Vec<_>>>()?;
            let texts = match images.is_empty() {
                true => chunk.iter().map(|r| r.text.clone()).collect(),
                false => Vec::new(),
            };
            let mut request = tonic::Request::new(ClassifyRequest {
                task: args.task.clone(),
                texts,
                images,
                top_k: args.top_k,
            });
            if let Some(t) = &args.token {
                request
                    .metadata_mut()
                    .insert("authorization", format!("Bearer {t}").parse()?);
            }
            let r = client
                .classify(request)
                .await
                .map_err(|s| rpc_error(&addr, s))?
                .into_inner();
            for (row, c) in chunk.iter().zip(&r.results) {
                let scores: serde_json::Map<String, serde_json::Value> = c
                    .scores
                    .iter()
                    .map(|s| (s.label.clone(), serde_json::json!(s.score)))
                    .collect();
                // The input's own fields keep their names, but a "label" column
                // becomes "true_label"; ours are added over the rest.
                let mut line = row.extra.clone();
                if let Some(l) = line.remove("label") {
                    line.insert("true_label".into(), l);
                }
                let input = match &row.image {
                    Some(p) => ("image", serde_json::json!(p.display().to_string())),
                    None => ("text", serde_json::json!(row.text)),
                };
                for (k, v) in [
                    input,
                    ("label", serde_json::json!(c.label)),
                    ("score", serde_json::json!(c.score)),
                    ("scores", serde_json::json!(scores)),
                    ("task", serde_json::json!(r.task)),
                    ("head_version", serde_json::json!(r.head_version)),
                ] {
                    line.insert(k.into(), v);
                }
                if crate::pipe_closed(writeln!(out, "{}", serde_json::Value::Object(line)))? {
                    return Ok(());
                }
            }
            if let Some(bar) = &progress {
                bar.inc(chunk.len() as u64);
                if bar.is_hidden() {
                    let done = bar.position();
                    eprintln!(
                        "[classify] {done}/{} texts ({:.0}/s)",
                        rows.len(),
                        done as f64 / started.elapsed().as_secs_f64().max(1e-3)
                    );
                }
            }
        }
        if let Some(bar) = &progress {
            bar.finish_and_clear();
        }
        crate::pipe_closed(out.flush())?;
        Ok(())
    })
}
