//! One training run end to end: labels and split, frozen features (cached), the head,
//! the baseline, metrics, and the (not yet stored) artifact.
use std::time::Instant;

use polyhead_backbone::{Branch, EncoderHandle, Top};
use polyhead_heads::{
    now_rfc3339, Candidate, Evaluation, Head, HeadArtifact, HeadKind, Manifest, Metrics, Reads,
    Selection, FORMAT_VERSION,
};
use serde::Serialize;

use crate::{
    adapt,
    baseline::{baseline_on_split, Baseline, THUMBNAIL_DIM, THUMBNAIL_SIDE},
    features::{CacheStats, FeatureCache},
    metrics::{argmax_rows, evaluate},
    predict::backbone_ref,
    select::{choose, plan, Context, Examples, Windowed},
    split::{check_holdout, stratified_split},
    stored_branch,
    train::{train_head, EpochReport, Split},
    Adapt, Budget, Dataset, Error, HeadChoice, Result, TrainOptions, Windows,
};

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// Task name.
    pub task: String,
    /// Training examples.
    pub train: Dataset,
    /// Validation examples; `None` = a stratified split of `train`.
    pub valid: Option<Dataset>,
    /// Held-out test examples, evaluated at the end and never used for fitting or
    /// early stopping.
    pub test: Option<Dataset>,
    /// Hyper-parameters.
    pub options: TrainOptions,
    /// Deadline and cancellation of the run.
    pub budget: Budget,
}

/// Progress of a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Progress {
    /// A stage began (`features`, `head`, `baseline`, ...).
    Stage {
        /// Stage name.
        name: String,
    },
    /// More texts have features (embedded or read from the cache).
    Features {
        /// Texts done so far.
        done: usize,
        /// Texts in all.
        total: usize,
    },
    /// An epoch of the MLP head finished.
    Epoch(EpochReport),
    /// A candidate head was scored on held-out examples.
    Candidate(Candidate),
}

/// Seconds per stage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Computing or reading features.
    pub features_s: f64,
    /// Selecting and fitting the head, and scoring and fitting the baseline.
    pub head_s: f64,
    /// Everything.
    pub total_s: f64,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Task.
    pub task: String,
    /// Examples the final head was fitted on.
    pub n_train: usize,
    /// Examples its validation metrics were measured on (out of fold, held out, or
    /// the caller's validation set).
    pub n_valid: usize,
    /// Epochs the MLP ran, or L-BFGS iterations of the final linear/hybrid fit.
    pub epochs: usize,
    /// The head kind trained (`linear`, `hybrid`, `mlp`).
    pub head: String,
    /// How the head was chosen (linear and hybrid heads).
    pub selection: Option<Selection>,
    /// Validation metrics of head and baseline: measured on examples each was not
    /// fitted on.
    pub validation: Evaluation,
    /// Test metrics of head and baseline, when a test set was given.
    pub test: Option<Evaluation>,
    /// Feature cache hits and misses.
    pub feature_cache: CacheStats,
    /// Seconds per stage.
    pub timings: Timings,
}

/// Runs a training request. Returns the artifact (version 0: the store assigns it)
/// and the report. The test set, if any, is embedded and scored at the end only: it
/// never reaches fitting, selection or stopping.
pub fn train_task(
    encoder: &EncoderHandle,
    cache: &FeatureCache,
    req: &TrainRequest,
    progress: &mut dyn FnMut(Progress),
) -> Result<(HeadArtifact, TrainReport)> {
    let start = Instant::now();
    polyhead_heads::validate_task_name(&req.task)?;
    req.options.validate()?;
    let labels = req.train.labels();
    if labels.len() < 2 {
        return Err(Error::Dataset(format!(
            "need at least 2 labels, found {labels:?}"
        )));
    }
    let index = |ds: &Dataset, what: &str| -> Result<Vec<usize>> {
        ds.examples
            .iter()
            .map(|e| {
                labels.binary_search(&e.label).map_err(|_| {
                    Error::Dataset(format!(
                        "{what} line {}: label {:?} never appears in the training data",
                        e.line, e.label
                    ))
                })
            })
            .collect()
    };
    // Training rows first, then the caller's validation rows (if any).
    let mut texts = req.train.texts();
    let mut y = index(&req.train, "training")?;
    let n_train = y.len();
    if let Some(v) = &req.valid {
        texts.extend(v.texts());
        y.extend(index(v, "validation")?);
    } else {
        check_holdout(&labels, &y)?;
    }
    let test = match &req.test {
        Some(t) => Some((t.texts(), index(t, "test")?)),
        None => None,
    };

    progress(Progress::Stage {
        name: "features".into(),
    });
    let t0 = Instant::now();
    let total = texts.len() + test.as_ref().map_or(0, |t| t.0.len());
    let mut done = 0;
    let mut features = |texts: &[String]| {
        let out = cache.features_within(encoder, texts, &req.budget, &mut |n| {
            progress(Progress::Features {
                done: done + n,
                total,
            })
        });
        done += texts.len();
        out
    };
    let (x, s1) = features(&texts)?;
    let x_test = match &test {
        Some((t, _)) => Some(features(t)?),
        None => None,
    };
    let s2 = x_test.as_ref().map(|x| x.1).unwrap_or_default();
    let feature_cache = CacheStats {
        hits: s1.hits + s2.hits,
        misses: s1.misses + s2.misses,
    };

    // Pictures: the baseline's thumbnails (every file already passed the backbone's
    // decoding limits above).
    let images = encoder.info().input == "image";
    let thumbs = |paths: &[String]| -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(paths.len() * THUMBNAIL_DIM);
        for p in paths {
            let bytes = std::fs::read(p).map_err(crate::error::io(p.as_str()))?;
            let t = polyhead_backbone::thumbnail(&bytes, THUMBNAIL_SIDE, u64::MAX)
                .map_err(|e| Error::Dataset(format!("{p}: {e}")))?;
            out.extend(t);
        }
        Ok(out)
    };
    // An image task is marked by `pixels`, empty when no baseline is trained.
    let with_baseline = images && !req.options.skip_baseline;
    let pixels = match (images, with_baseline) {
        (false, _) => None,
        (true, false) => Some(Vec::new()),
        (true, true) => Some(thumbs(&texts)?),
    };
    let pixels_test = match &test {
        Some((t, _)) if with_baseline => Some(thumbs(t)?),
        _ => None,
    };
    // Long texts: every window's features too, when a head may read them.
    let read_windows =
        !images && req.options.windows != Windows::Never && req.options.head != HeadChoice::Mlp;
    let windowed = if read_windows {
        progress(Progress::Stage {
            name: "windows".into(),
        });
        Some(cache.windowed_within(encoder, &texts, &x, &req.budget)?)
    } else {
        None
    };
    let features_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let dim = encoder.info().dim;
    // The checkpoint in libtorch, loaded only when adaptation is tried.
    let mut top: Option<Top> = None;
    let examples = Examples {
        emb: x.as_slice(),
        dim,
        texts: &texts,
        y: &y,
        n_train,
        pixels: pixels.as_deref(),
        windows: windowed.as_ref().map(|(w, per_text)| Windowed {
            emb: w.as_slice(),
            per_text: *per_text,
        }),
    };
    let fitted = match req.options.head {
        HeadChoice::Mlp => fit_mlp(&examples, &labels, req, progress)?,
        choice => {
            let c = choose(
                &examples,
                &labels,
                choice,
                &req.options,
                &req.budget,
                progress,
            )?;
            let fitted = Fitted {
                head: c.head,
                kind: c.kind,
                validation: c.validation,
                baseline: c.baseline,
                selection: Some(c.selection),
                n_fit: y.len(),
                epochs: c.iterations,
                branch: None,
                reads: c.reads,
            };
            let wanted = match req.options.adapt {
                Adapt::Never => false,
                Adapt::Always => true,
                Adapt::Auto => y.len() <= req.options.adapt_max_rows,
            };
            if wanted && !images && choice != HeadChoice::Hybrid {
                adapt_fitted(fitted, encoder, &examples, &labels, req, &mut top, progress)?
            } else {
                fitted
            }
        }
    };
    let head_s = t1.elapsed().as_secs_f64();

    // An adapted head reads its branch's features; a windowed one every window's.
    let x_test = match (x_test, &fitted.branch, &top, &test) {
        (Some((x, stats)), None, _, Some((t, _))) if fitted.reads == Reads::Windows => {
            Some((cache.windowed_within(encoder, t, &x, &req.budget)?.0, stats))
        }
        (Some(_), Some(branch), Some(top), Some((t, _))) => {
            let ids = encoder.tokenize(t)?;
            let rows: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
            let mut out = Vec::with_capacity(rows.len() * dim);
            for chunk in rows.chunks(32) {
                req.budget.check()?;
                out.extend(top.embed_branches(chunk, &[branch])?.remove(0));
            }
            Some((
                polyhead_backbone::Embeddings::new(dim, out),
                Default::default(),
            ))
        }
        (x, ..) => x,
    };
    let test = match (&x_test, &test) {
        (Some((x, _)), Some((t, y_t))) => Some(Evaluation {
            head: evaluate(
                &labels,
                y_t,
                &argmax_rows(&fitted.head.predict_batch(x.as_slice(), t)?),
            ),
            baseline: fitted
                .baseline
                .as_ref()
                .map(|(_, b)| b.evaluate(&labels, t, pixels_test.as_deref(), y_t)),
        }),
        _ => None,
    };
    let validation = Evaluation {
        head: fitted.validation,
        baseline: fitted.baseline.map(|(m, _)| m),
    };
    let info = encoder.info();
    let manifest = Manifest {
        format: FORMAT_VERSION,
        task: req.task.clone(),
        version: 0,
        labels: labels.clone(),
        head: fitted.kind,
        input_dim: dim,
        backbone: backbone_ref(info),
        training: serde_json::to_value(&req.options).unwrap_or_default(),
        dataset_hash: req.train.hash(),
        created_at: now_rfc3339(),
        metrics: Some(validation.clone()),
        selection: fitted.selection.clone(),
        branch: match (&fitted.branch, &top) {
            (Some(b), Some(top)) => Some(stored_branch::spec(b, &top.shape())),
            _ => None,
        },
        reads: fitted.reads,
    };
    let report = TrainReport {
        task: req.task.clone(),
        n_train: fitted.n_fit,
        n_valid: validation.head.n as usize,
        epochs: fitted.epochs,
        head: fitted.kind.name().to_owned(),
        selection: fitted.selection,
        validation,
        test,
        feature_cache,
        timings: Timings {
            features_s,
            head_s,
            total_s: start.elapsed().as_secs_f64(),
        },
    };
    Ok((
        HeadArtifact {
            branch: fitted.branch.as_ref().map(stored_branch::weights_of),
            manifest,
            head: fitted.head,
        },
        report,
    ))
}

/// What either training path produced.
struct Fitted {
    head: Head,
    kind: HeadKind,
    validation: Metrics,
    baseline: Option<(Metrics, Baseline)>,
    selection: Option<Selection>,
    /// Examples the final head was fitted on.
    n_fit: usize,
    /// Epochs (MLP, branch) or L-BFGS iterations of the final fit.
    epochs: usize,
    /// The branch of an adapted head.
    branch: Option<Branch>,
    /// Whether the head reads every window of a text.
    reads: Reads,
}

/// Tries adapted candidates on the splits the frozen heads were scored on, and
/// swaps the frozen head for the best one when it pays (see `adapt::consider`).
fn adapt_fitted(
    mut fitted: Fitted,
    encoder: &EncoderHandle,
    ex: &Examples<'_>,
    labels: &[String],
    req: &TrainRequest,
    top: &mut Option<Top>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Fitted> {
    let Some(selection) = fitted.selection.as_mut() else {
        return Ok(fitted);
    };
    let Some(frozen) = selection
        .candidates
        .iter()
        .find(|c| c.name == selection.chosen)
        .map(|c| (c.accuracy, c.log_loss))
    else {
        return Ok(fitted);
    };
    let plan = plan(ex, req.options.seed);
    progress(Progress::Stage {
        name: format!("adapt ({})", plan.method),
    });
    let loaded = Top::load(&encoder.info().model_dir)?;
    let ids = encoder.tokenize(ex.texts)?;
    let cx = Context::new(ex.y, labels.len(), &req.options, &req.budget);
    let outcome = adapt::consider(
        &loaded,
        &ids,
        ex.emb,
        ex.dim,
        ex.y,
        &cx,
        &plan,
        frozen,
        &req.options,
        &req.budget,
        progress,
    )?;
    *top = Some(loaded);
    selection.candidates.extend(outcome.candidates);
    if let Some(kept) = outcome.kept {
        selection.chosen = kept.name.clone();
        fitted.head = Head::new(HeadKind::Linear, vec![kept.trained.head], labels.to_vec())?;
        fitted.kind = HeadKind::Linear;
        fitted.validation = evaluate(labels, &kept.truth, &kept.predicted);
        fitted.epochs = kept.epochs;
        fitted.branch = Some(kept.trained.branch);
        // A branch reads the truncated text.
        fitted.reads = Reads::Truncated;
        tracing::info!(layers = kept.layers, name = %kept.name, "adapted head kept");
    }
    Ok(fitted)
}

/// The MLP: AdamW with early stopping on a stratified split (or the caller's
/// validation rows); the baseline is fitted and scored on the same split.
fn fit_mlp(
    ex: &Examples<'_>,
    labels: &[String],
    req: &TrainRequest,
    progress: &mut dyn FnMut(Progress),
) -> Result<Fitted> {
    let (train_idx, valid_idx) = if ex.n_train < ex.y.len() {
        (
            (0..ex.n_train).collect(),
            (ex.n_train..ex.y.len()).collect(),
        )
    } else {
        stratified_split(ex.y, req.options.validation_fraction, req.options.seed)
    };
    let rows = |idx: &[usize]| -> (Vec<f32>, Vec<usize>) {
        let x = idx
            .iter()
            .flat_map(|&i| ex.emb[i * ex.dim..(i + 1) * ex.dim].iter().copied())
            .collect();
        (x, idx.iter().map(|&i| ex.y[i]).collect())
    };
    let ((xt, yt), (xv, yv)) = (rows(&train_idx), rows(&valid_idx));
    progress(Progress::Stage {
        name: "head".into(),
    });
    let (head, history) = train_head(
        &Split {
            features: &xt,
            labels: &yt,
        },
        &Split {
            features: &xv,
            labels: &yv,
        },
        ex.dim,
        labels,
        &req.options,
        &req.budget,
        &mut |e| progress(Progress::Epoch(e)),
    )?;
    let valid_texts: Vec<&String> = valid_idx.iter().map(|&i| &ex.texts[i]).collect();
    let validation = evaluate(
        labels,
        &yv,
        &argmax_rows(&head.predict_batch(&xv, &valid_texts)?),
    );
    let baseline = if req.options.skip_baseline {
        None
    } else {
        progress(Progress::Stage {
            name: "baseline".into(),
        });
        Some(baseline_on_split(
            ex,
            labels,
            &train_idx,
            &valid_idx,
            &req.options,
            &req.budget,
        )?)
    };
    Ok(Fitted {
        kind: head.kind(),
        head,
        validation,
        baseline,
        selection: None,
        n_fit: train_idx.len(),
        epochs: history.len(),
        branch: None,
        reads: Reads::Truncated,
    })
}
