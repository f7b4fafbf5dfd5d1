//! `polyhead train`, `eval`, `tasks`, `activate`, `rollback`: the store and the
//! trainer from the command line.
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use polyhead_backbone::EncoderHandle;
use polyhead_heads::{HeadStore, Metrics};
use polyhead_settings::Settings;
use polyhead_trainer::{
    train_task, Budget, Dataset, FeatureCache, Format, Progress, TrainOptions, TrainRequest,
};
use serde_json::json;

use crate::BackboneArgs;

/// `--store URL`.
#[derive(Debug, Clone, Args)]
pub struct StoreArg {
    /// Head store: a folder, or postgres://user:password@host:5432/db (store.url).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

impl StoreArg {
    /// The override, if given.
    pub fn overrides(&self) -> Vec<(&'static str, String)> {
        self.store
            .iter()
            .map(|s| ("store.url", s.clone()))
            .collect()
    }
}

/// Arguments of `polyhead train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Task name (^[a-z0-9][a-z0-9_-]{0,63}$).
    #[arg(long)]
    pub task: String,
    /// Training data: .jsonl rows {"text","label"} or .csv with a text,label header;
    /// `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// jsonl or csv (default: by extension; otherwise JSONL if the data starts with `{`).
    #[arg(long)]
    pub format: Option<String>,
    /// Validation data (default: a stratified split of --data).
    #[arg(long, value_name = "FILE")]
    pub valid: Option<PathBuf>,
    /// Held-out test data: evaluated at the end for head and baseline, never trained on.
    #[arg(long, value_name = "FILE")]
    pub test: Option<PathBuf>,
    #[command(flatten)]
    pub columns: Columns,
    /// Train on a seeded, stratified sample of about N examples of --data (each label
    /// keeps its share): a quick first head, e.g. to serve while the full one trains.
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// auto (linear or hybrid, whichever scores best on held-out examples), linear,
    /// hybrid (embedding + the task's own TF-IDF words) or mlp.
    #[arg(long, default_value = "auto")]
    pub head: String,
    /// Seed of initialisation, shuffling, dropout and split.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Most epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// AdamW learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Fine-tuning transfer: never (frozen features only, the default), auto
    /// (adapted candidates, a branch over the backbone's top layers, are scored
    /// beside the frozen heads and kept only when their held-out gain pays for the
    /// layers they add) or always.
    #[arg(long, default_value = "never", value_name = "WHEN")]
    pub adapt: String,
    /// Adapted depths to try, in layers from the top, comma-separated (default 1,2).
    #[arg(long, value_name = "D,..", value_delimiter = ',')]
    pub adapt_layers: Vec<usize>,
    /// Long texts: always (the default: the head reads the pooled features of every
    /// window of a text; a longer text costs a pass per further window), never (the
    /// truncated text, one shared pass) or auto (both are scored on held-out
    /// examples and the better is kept).
    #[arg(long, default_value = "always", value_name = "WHEN")]
    pub windows: String,
    /// Store the version but leave the active one alone.
    #[arg(long)]
    pub no_activate: bool,
    /// Activate only if the head's validation accuracy reaches this.
    #[arg(long, value_name = "ACC")]
    pub min_accuracy: Option<f64>,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArg,
    #[command(flatten)]
    pub backbone: BackboneArgs,
}

/// Arguments of `polyhead activate`.
#[derive(Debug, Args)]
pub struct ActivateArgs {
    /// Task name.
    #[arg(long)]
    pub task: String,
    /// The stored version to make active.
    #[arg(long)]
    pub version: u64,
    #[command(flatten)]
    pub store: StoreArg,
}

/// Arguments of `polyhead rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Task name.
    #[arg(long)]
    pub task: String,
    #[command(flatten)]
    pub store: StoreArg,
}

/// Where a labelled file keeps its text and its label (train, eval, report).
#[derive(Debug, Clone, clap::Args)]
pub struct Columns {
    /// The CSV column (or JSONL field) holding the text.
    #[arg(
        long = "text-column",
        value_name = "TEXT_COLUMN",
        default_value = "text"
    )]
    pub text: String,
    /// The CSV column (or JSONL field) holding the label.
    #[arg(
        long = "label-column",
        value_name = "LABEL_COLUMN",
        default_value = "label"
    )]
    pub label: String,
}

/// Opens the store `store.url` names (a folder that does not exist yet is created).
pub fn open_store(settings: &Settings) -> Result<Box<dyn HeadStore>> {
    settings
        .store
        .url
        .open(None)
        .with_context(|| format!("opening store {}", settings.store.url))
}

/// Opens an existing store for a command that reads it: a store folder that does not
/// exist is an error (a mistyped `--store` must not answer "no tasks").
pub fn open_existing_store(settings: &Settings) -> Result<Box<dyn HeadStore>> {
    if let Some(folder) = settings.store.url.folder() {
        if !folder.is_dir() {
            return Err(crate::Failure::NotFound.wrap(anyhow::anyhow!(
                "store folder {folder:?} does not exist (--store / store.url): check the path, \
                 or train a task first (polyhead train creates it)"
            )));
        }
    }
    open_store(settings)
}

/// `version`, or the task's active one; "task not found" when it has no versions.
pub fn version_or_active(store: &dyn HeadStore, task: &str, version: Option<u64>) -> Result<u64> {
    let versions = known_task(store, task)?;
    match version {
        Some(v) if versions.contains(&v) => Ok(v),
        Some(v) => Err(crate::Failure::NotFound.wrap(anyhow::anyhow!(
            "task {task:?} has no version {v}; its versions are {versions:?}"
        ))),
        None => store
            .active(task)?
            .with_context(|| format!("task {task:?} has no active version")),
    }
}

/// The store's versions of `task`, or "task not found" when it has none.
fn known_task(store: &dyn HeadStore, task: &str) -> Result<Vec<u64>> {
    let versions = store.versions(task)?;
    if versions.is_empty() {
        return Err(crate::Failure::NotFound.wrap(anyhow::anyhow!(
            "task {task:?} not found in the store (polyhead tasks lists them)"
        )));
    }
    Ok(versions)
}

pub(crate) fn spawn_encoder(settings: &Settings) -> Result<EncoderHandle> {
    EncoderHandle::spawn(&settings.backbone.model_dir, &settings.encoder_options())
        .context("loading the backbone")
}

pub(crate) fn load(path: &std::path::Path, text: &str, label: &str) -> Result<Dataset> {
    Ok(Dataset::read_columns(path, None, text, label)?)
}

/// Progress of a training run on stderr: on a terminal a bar while features are
/// embedded (a cold-cache run embeds for minutes), redrawn every 200 ms with its rate
/// and ETA; in a pipe or a log a line per tenth with the same numbers. A line every
/// 10 epochs.
fn progress_printer(quiet: bool) -> impl FnMut(Progress) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut phase: Option<(std::time::Instant, usize)> = None;
    let mut last_tenth = usize::MAX;
    move |p| {
        if quiet {
            return;
        }
        match p {
            Progress::Stage { name } => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                phase = None;
                last_tenth = usize::MAX;
                eprintln!("[train] {name}");
            }
            Progress::Features { done, total } if tty => {
                let b = bar.get_or_insert_with(|| {
                    let b = indicatif::ProgressBar::with_draw_target(
                        Some(total as u64),
                        indicatif::ProgressDrawTarget::stderr(),
                    );
                    b.set_style(
                        indicatif::ProgressStyle::with_template(
                            "[train] features {wide_bar} {pos}/{len} texts ({elapsed}, eta {eta})",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                    b.enable_steady_tick(std::time::Duration::from_millis(200));
                    b
                });
                b.set_length(total as u64);
                b.set_position(done as u64);
                if done >= total {
                    b.finish_and_clear();
                    bar = None;
                    eprintln!("[train] features {done}/{total} texts");
                }
            }
            Progress::Features { done, total } => {
                // Logs get a line per tenth, with the rate and what is left.
                let (start, first) = *phase.get_or_insert((std::time::Instant::now(), done));
                let tenth = done * 10 / total.max(1);
                if tenth != last_tenth {
                    last_tenth = tenth;
                    let secs = start.elapsed().as_secs_f64();
                    let rate = (done - first) as f64 / secs.max(1e-3);
                    let eta = if done >= total {
                        "done".to_string()
                    } else if done > first && secs > 0.5 {
                        format!("eta {:.0}s", (total - done) as f64 / rate)
                    } else {
                        "eta ?".to_string()
                    };
                    eprintln!(
                        "[train] features {done}/{total} texts ({:.0}/s, {eta})",
                        if secs > 0.5 { rate } else { 0.0 }
                    );
                }
            }
            Progress::Epoch(e) if e.epoch % 10 == 0 => eprintln!(
                "[train] epoch {:3}  train loss {:.4}  valid loss {:.4}  valid acc {:.4}",
                e.epoch, e.train_loss, e.validation_loss, e.validation_accuracy
            ),
            Progress::Epoch(_) => {}
            Progress::Candidate(c) => eprintln!(
                "[train] candidate {:<28} accuracy {:.4}  log-loss {:.4}{}",
                c.name,
                c.accuracy,
                c.log_loss,
                c.cost_us
                    .map(|us| format!("  +{us:.0} us/text ({} layers)", c.layers))
                    .unwrap_or_default()
            ),
        }
    }
}

/// `polyhead train`.
pub fn train(settings: &Settings, a: &TrainArgs) -> Result<()> {
    let mut options = TrainOptions {
        head: a.head.parse()?,
        adapt: a.adapt.parse()?,
        windows: a.windows.parse()?,
        ..Default::default()
    };
    if !a.adapt_layers.is_empty() {
        options.adapt_layers = a.adapt_layers.clone();
    }
    if let Some(s) = a.seed {
        options.seed = s;
    }
    if let Some(e) = a.epochs {
        options.max_epochs = e;
    }
    if let Some(lr) = a.lr {
        options.learning_rate = lr;
    }
    let format: Option<Format> = a.format.as_deref().map(str::parse).transpose()?;
    let req = TrainRequest {
        task: a.task.clone(),
        train: {
            let data = Dataset::read_columns(&a.data, format, &a.columns.text, &a.columns.label)?;
            match a.sample {
                Some(n) => data.sample(n, a.seed.unwrap_or(0)),
                None => data,
            }
        },
        valid: a
            .valid
            .as_deref()
            .map(|p| load(p, &a.columns.text, &a.columns.label))
            .transpose()?,
        test: a
            .test
            .as_deref()
            .map(|p| load(p, &a.columns.text, &a.columns.label))
            .transpose()?,
        options,
        budget: Budget::unlimited(),
    };
    polyhead_heads::validate_task_name(&req.task)?;
    let store = open_store(settings)?;
    let encoder = spawn_encoder(settings)?;
    let cache = FeatureCache::new(settings.feature_cache_dir());
    let (artifact, report) = train_task(&encoder, &cache, &req, &mut progress_printer(a.json))?;
    let passes = a
        .min_accuracy
        .is_none_or(|min| report.validation.head.accuracy >= min);
    let activate = !a.no_activate && passes;
    let version = store.put_and_activate(&artifact, activate)?;
    if a.json {
        println!(
            "{}",
            json!({
                "task": report.task, "version": version, "activated": activate,
                "head_kind": report.head, "selection": report.selection,
                "head": report.validation.head, "baseline": report.validation.baseline,
                "test": report.test, "epochs": report.epochs, "n_train": report.n_train,
                "n_valid": report.n_valid, "feature_cache": report.feature_cache, "timings": report.timings,
            })
        );
    } else {
        let line = |name: &str, m: &Metrics| {
            eprintln!(
                "  {name:<9} accuracy {:.4}  macro-F1 {:.4}  (n={})",
                m.accuracy, m.macro_f1, m.n
            )
        };
        eprintln!(
            "task {} version {version}, {} head{}",
            report.task,
            report.head,
            if activate {
                " (active)"
            } else {
                " (stored, not active)"
            }
        );
        if let Some(s) = &report.selection {
            eprintln!(
                " chosen by {}: {} of {} candidates",
                s.method,
                s.chosen,
                s.candidates.len()
            );
        }
        eprintln!(" validation (examples each model was not fitted on):");
        line("head", &report.validation.head);
        if let Some(b) = &report.validation.baseline {
            line("baseline", b);
        }
        if let Some(t) = &report.test {
            eprintln!(" test:");
            line("head", &t.head);
            if let Some(b) = &t.baseline {
                line("baseline", b);
            }
        }
        eprintln!(
            " {:.2}s total ({} {}, {} cached / {} embedded texts)",
            report.timings.total_s,
            report.epochs,
            if report.head == "mlp" {
                "epochs"
            } else {
                "L-BFGS iterations"
            },
            report.feature_cache.hits,
            report.feature_cache.misses
        );
        if !passes {
            eprintln!(" not activated: validation accuracy below --min-accuracy");
        }
    }
    Ok(())
}

/// `polyhead eval`.
/// `polyhead tasks`: one JSON object per task.
pub fn tasks(settings: &Settings) -> Result<()> {
    let store = open_existing_store(settings)?;
    for task in store.tasks()? {
        // One damaged task is reported on its line; the others still list.
        let active = match store.active(&task) {
            Ok(a) => a,
            Err(e) => {
                println!("{}", json!({ "task": task, "error": e.to_string() }));
                continue;
            }
        };
        let versions = store.versions(&task)?;
        let (labels, kind) = match active.map(|v| store.load(&task, v)).transpose() {
            Ok(Some(a)) => (a.head.labels().to_vec(), a.manifest.head.name().to_string()),
            Ok(None) => (Vec::new(), String::new()),
            Err(e) => (Vec::new(), format!("unreadable: {e}")),
        };
        println!(
            "{}",
            json!({ "task": task, "active_version": active, "versions": versions, "labels": labels, "head": kind })
        );
    }
    Ok(())
}

/// `polyhead activate`.
pub fn activate(settings: &Settings, a: &ActivateArgs) -> Result<()> {
    let store = open_existing_store(settings)?;
    let version = version_or_active(store.as_ref(), &a.task, Some(a.version))?;
    store.activate(&a.task, version)?;
    println!("{}", json!({ "task": a.task, "active_version": version }));
    Ok(())
}

/// `polyhead rollback`.
pub fn rollback(settings: &Settings, a: &RollbackArgs) -> Result<()> {
    let store = open_existing_store(settings)?;
    known_task(store.as_ref(), &a.task)?;
    let version = store.rollback(&a.task)?;
    println!("{}", json!({ "task": a.task, "active_version": version }));
    Ok(())
}
