//! `polyhead`: one binary for serving, training, evaluating, embedding and benchmarking.
mod bench;
mod client;
mod embed;
mod eval;
mod load;
mod ops;
mod report;
mod tasks;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use polyhead_settings::Settings;

/// polyhead: one frozen text encoder, many hot-swappable task heads.
#[derive(Debug, Parser)]
#[command(name = "polyhead", version, about)]
struct Cli {
    /// TOML config file (layered over the defaults; env POLYHEAD__SECTION__KEY wins over it).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC server (Inference + admin Registry, health, reflection, metrics).
    Serve(client::ServeArgs),
    /// Classify texts with a running server.
    Classify(client::ClassifyArgs),
    /// Print the backbone's description as one JSON object.
    Info(BackboneArgs),
    /// Embed texts: one per line on stdin, one JSON object per line on stdout.
    Embed(BackboneArgs),
    /// Measure backbone throughput (texts/s) on a file of texts, or with --addr put
    /// gRPC load on a running server (latency percentiles, errors by code).
    Bench(bench::BenchArgs),
    /// Train a head on labelled data, evaluate it against the baseline, store it.
    Train(tasks::TrainArgs),
    /// Evaluate a stored head on labelled data.
    Eval(eval::EvalArgs),
    /// Write an HTML report of a stored head on labelled data: the labelled confusion
    /// matrix, per-class precision/recall/F1, the head against its baseline, the
    /// candidates it was chosen from.
    Report(report::ReportArgs),
    /// List the store's tasks.
    Tasks(tasks::StoreArg),
    /// Make a stored version active.
    Activate(tasks::ActivateArgs),
    /// Re-activate the previously active version.
    Rollback(tasks::RollbackArgs),
    /// Head store operations (copy between a folder and PostgreSQL).
    #[command(subcommand)]
    Store(ops::StoreCommand),
    /// Ask a running server's gRPC health service; exit 0 only when SERVING.
    Health(ops::HealthArgs),
    /// Print a shell completion script: `polyhead completions bash > /etc/bash_completion.d/polyhead`
    /// (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Flags that override `[backbone]` settings.
#[derive(Debug, Clone, Args, Default)]
pub struct BackboneArgs {
    /// Checkpoint folder (backbone.model_dir).
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// auto (bf16 on AMX CPUs and GPUs, else f32), f32, bf16 or int8 (backbone.dtype).
    #[arg(long)]
    dtype: Option<String>,
    /// auto, torch, onnxruntime or openvino (backbone.backend).
    #[arg(long)]
    backend: Option<String>,
    /// cpu, cuda or cuda:N (backbone.device).
    #[arg(long)]
    device: Option<String>,
    /// Most texts per forward pass (backbone.batch_size).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Intra-op threads, 0 = all cores (backbone.threads).
    #[arg(long)]
    threads: Option<usize>,
}

impl BackboneArgs {
    /// `(key, value)` overrides for [`Settings::load`].
    pub fn overrides(&self) -> Vec<(&'static str, String)> {
        let mut o = Vec::new();
        if let Some(v) = &self.model {
            o.push(("backbone.model_dir", v.display().to_string()));
        }
        if let Some(v) = &self.dtype {
            o.push(("backbone.dtype", v.clone()));
        }
        if let Some(v) = &self.device {
            o.push(("backbone.device", v.clone()));
        }
        if let Some(v) = &self.backend {
            o.push(("backbone.backend", v.clone()));
        }
        if let Some(v) = self.batch_size {
            o.push(("backbone.batch_size", v.to_string()));
        }
        if let Some(v) = self.threads {
            o.push(("backbone.threads", v.to_string()));
        }
        o
    }
}

/// Rust's allocations (request and response buffers, token ids, embeddings) go
/// through jemalloc, whose background thread hands freed pages back to the OS (the
/// options are set at build time in `.cargo/config.toml`): under glibc's malloc the
/// server kept ~145 MB of a slow-reader attack's buffers after they were released,
/// under jemalloc's defaults ~100 MB, with the background purge none (RELIABILITY.md;
/// mimalloc kept all of them). libtorch's and ONNX Runtime's own allocations are
/// unaffected (the symbols are prefixed, nothing overrides `malloc`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let cli = Cli::parse();
    init_logs(cli.config.as_deref());
    if let Err(e) = run(cli) {
        let kind = Failure::of(&e);
        let message = describe(&e);
        // Commands asked for --json report their error as one JSON object too.
        if std::env::args().any(|a| a == "--json") {
            eprintln!(
                "{}",
                serde_json::json!({"error": message, "kind": kind.name(), "exit_code": kind as i32})
            );
        } else {
            eprintln!("error: {message}");
        }
        std::process::exit(kind as i32);
    }
}

/// Whether a write to stdout found the reader gone (`| head -1`: its choice, not an
/// error); other failures are errors.
pub fn pipe_closed(written: std::io::Result<()>) -> Result<bool> {
    match written {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// How a command failed: its exit code (README, "Exit codes"). 2 is clap's, for a
/// usage error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Anything else.
    Other = 1,
    /// A data file or an argument's value is wrong.
    BadInput = 3,
    /// The task, version or store named does not exist.
    NotFound = 4,
    /// The server did not answer (nothing listens, or not gRPC).
    Unreachable = 5,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Shown nowhere: the message is the cause's.
        Ok(())
    }
}

impl Failure {
    /// Tags `e` with this kind.
    pub fn wrap(self, e: anyhow::Error) -> anyhow::Error {
        e.context(self)
    }

    /// The kind of an error: a tag, or what its cause says.
    fn of(e: &anyhow::Error) -> Failure {
        if let Some(f) = e.downcast_ref::<Failure>() {
            return *f;
        }
        for cause in e.chain() {
            if let Some(t) = cause.downcast_ref::<polyhead_trainer::Error>() {
                use polyhead_trainer::Error as T;
                return match t {
                    T::Row { .. } | T::Dataset(_) | T::Options(_) | T::Limit(_) => {
                        Failure::BadInput
                    }
                    T::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                        Failure::NotFound
                    }
                    _ => Failure::Other,
                };
            }
            if let Some(s) = cause.downcast_ref::<tonic::Status>() {
                return Failure::of_code(s.code());
            }
            if cause.downcast_ref::<tonic::transport::Error>().is_some() {
                return Failure::Unreachable;
            }
        }
        Failure::Other
    }

    /// The kind of a gRPC status code.
    pub fn of_code(code: tonic::Code) -> Failure {
        match code {
            tonic::Code::NotFound => Failure::NotFound,
            tonic::Code::InvalidArgument => Failure::BadInput,
            tonic::Code::Unavailable => Failure::Unreachable,
            _ => Failure::Other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Failure::Other => "error",
            Failure::BadInput => "bad_input",
            Failure::NotFound => "not_found",
            Failure::Unreachable => "unreachable",
        }
    }
}

/// Logs to stderr, as text or JSON (`log.format`; a configuration that does not
/// load gets text, and its error is reported by the command itself). Levels from
/// `POLYHEAD_LOG` (default `info,sqlx=warn,ort=warn`: PostgreSQL notices and ONNX
/// Runtime's per-session graph-optimisation lines are not news).
fn init_logs(config: Option<&std::path::Path>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POLYHEAD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,ort=warn"));
    let json = Settings::load(config, &[])
        .is_ok_and(|s| s.log.format == polyhead_settings::LogFormat::Json);
    // Colour only on a terminal: a log file or a collector gets plain text
    // (NO_COLOR turns it off on a terminal too).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if json {
        logs.json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else {
        logs.init();
    }
}

/// The error and its causes, joined by ": ", leaving out a cause whose text the
/// message before it already contains (thiserror messages often embed their source).
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn run(cli: Cli) -> Result<()> {
    let load = |o: &[(&str, String)]| Settings::load(cli.config.as_deref(), o);
    match &cli.command {
        Command::Serve(a) => client::serve(load(&a.overrides())?, a),
        Command::Classify(a) => client::classify(a),
        Command::Info(a) => embed::info(&load(&a.overrides())?),
        Command::Embed(a) => embed::embed(&load(&a.overrides())?),
        Command::Bench(a) => bench::run(
            &load(&[a.backbone.overrides(), a.store.overrides()].concat())?,
            a,
        ),
        Command::Train(a) => tasks::train(
            &load(&[a.backbone.overrides(), a.store.overrides()].concat())?,
            a,
        ),
        Command::Eval(a) => eval::eval(
            &load(&[a.backbone.overrides(), a.store.overrides()].concat())?,
            a,
        ),
        Command::Report(a) => report::report(
            &load(&[a.backbone.overrides(), a.store.overrides()].concat())?,
            a,
        ),
        Command::Tasks(a) => tasks::tasks(&load(&a.overrides())?),
        Command::Activate(a) => tasks::activate(&load(&a.store.overrides())?, a),
        Command::Rollback(a) => tasks::rollback(&load(&a.store.overrides())?, a),
        Command::Store(c) => ops::store(c),
        Command::Health(a) => ops::health(a),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "polyhead", &mut out);
            use std::io::Write;
            pipe_closed(std::io::stdout().lock().write_all(&out))?;
            Ok(())
        }
    }
}
