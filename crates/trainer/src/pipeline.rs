//! One training run end to end: labels and split, frozen features (cached), the head,
//! the baseline, metrics, and the (not yet stored) artifact.
use std::time::Instant;

use polyhead_backbone::EncoderHandle;
use polyhead_heads::{
    now_rfc3339, BackboneRef, Evaluation, HeadArtifact, HeadKind, Manifest, Metrics, FORMAT_VERSION,
};
use serde::Serialize;

use crate::{
    baseline::Baseline,
    features::{CacheStats, FeatureCache},
    metrics::{argmax_rows, evaluate},
    split::stratified_split,
    train::{train_head, EpochReport, Split},
    Budget, Dataset, Error, Result, TrainOptions,
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
    /// An epoch of the head finished.
    Epoch(EpochReport),
}

/// Seconds per stage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Computing or reading features.
    pub features_s: f64,
    /// Training the head.
    pub head_s: f64,
    /// Fitting and training the baseline.
    pub baseline_s: f64,
    /// Everything.
    pub total_s: f64,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Task.
    pub task: String,
    /// Examples used for fitting / validation.
    pub n_train: usize,
    /// Validation examples.
    pub n_valid: usize,
    /// Epochs the head ran (early stopping included).
    pub epochs: usize,
    /// Validation metrics of head and baseline.
    pub validation: Evaluation,
    /// Test metrics of head and baseline, when a test set was given.
    pub test: Option<Evaluation>,
    /// Feature cache hits and misses.
    pub feature_cache: CacheStats,
    /// Seconds per stage.
    pub timings: Timings,
}

/// Runs a training request. Returns the artifact (version 0: the store assigns it)
/// and the report.
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
    let y_all = index(&req.train, "training")?;
    if req.valid.is_none() {
        check_holdout(&labels, &y_all)?;
    }
    let (train_idx, valid_set): (Vec<usize>, Vec<(String, usize)>) = match &req.valid {
        Some(v) => (
            (0..y_all.len()).collect(),
            v.texts().into_iter().zip(index(v, "validation")?).collect(),
        ),
        None => {
            let (t, v) =
                stratified_split(&y_all, req.options.validation_fraction, req.options.seed);
            let valid = v
                .iter()
                .map(|&i| (req.train.examples[i].text.clone(), y_all[i]))
                .collect();
            (t, valid)
        }
    };
    let train_texts: Vec<String> = train_idx
        .iter()
        .map(|&i| req.train.examples[i].text.clone())
        .collect();
    let y_train: Vec<usize> = train_idx.iter().map(|&i| y_all[i]).collect();
    let valid_texts: Vec<String> = valid_set.iter().map(|v| v.0.clone()).collect();
    let y_valid: Vec<usize> = valid_set.iter().map(|v| v.1).collect();
    let test = match &req.test {
        Some(t) => Some((t.texts(), index(t, "test")?)),
        None => None,
    };

    progress(Progress::Stage {
        name: "features".into(),
    });
    let t0 = Instant::now();
    let total = train_texts.len() + valid_texts.len() + test.as_ref().map_or(0, |t| t.0.len());
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
    let (x_train, s1) = features(&train_texts)?;
    let (x_valid, s2) = features(&valid_texts)?;
    let x_test = match &test {
        Some((texts, _)) => Some(features(texts)?),
        None => None,
    };
    let s3 = x_test.as_ref().map(|x| x.1).unwrap_or_default();
    let feature_cache = CacheStats {
        hits: s1.hits + s2.hits + s3.hits,
        misses: s1.misses + s2.misses + s3.misses,
    };
    let features_s = t0.elapsed().as_secs_f64();

    progress(Progress::Stage {
        name: "head".into(),
    });
    let t1 = Instant::now();
    let dim = encoder.info().dim;
    let (head, history) = train_head(
        &Split {
            features: x_train.as_slice(),
            labels: &y_train,
        },
        &Split {
            features: x_valid.as_slice(),
            labels: &y_valid,
        },
        dim,
        &labels,
        &req.options,
        &req.budget,
        &mut |e| progress(Progress::Epoch(e)),
    )?;
    let head_s = t1.elapsed().as_secs_f64();
    let head_metrics = |x: &[f32], y: &[usize]| -> Result<Metrics> {
        Ok(evaluate(&labels, y, &argmax_rows(&head.predict_batch(x)?)))
    };
    let valid_head = head_metrics(x_valid.as_slice(), &y_valid)?;
    let test_head = match (&x_test, &test) {
        (Some((x, _)), Some((_, y))) => Some(head_metrics(x.as_slice(), y)?),
        _ => None,
    };

    let t2 = Instant::now();
    let (valid_base, test_base) = if req.options.skip_baseline {
        (None, None)
    } else {
        progress(Progress::Stage {
            name: "baseline".into(),
        });
        let (tt, vt) = (refs(&train_texts), refs(&valid_texts));
        let base = Baseline::train(
            (&tt, &y_train),
            (&vt, &y_valid),
            labels.len(),
            &req.options,
            &req.budget,
        )?;
        let test_base = test
            .as_ref()
            .map(|(texts, y)| base.evaluate(&labels, &refs(texts), y));
        (Some(base.evaluate(&labels, &vt, &y_valid)), test_base)
    };
    let baseline_s = t2.elapsed().as_secs_f64();

    let validation = Evaluation {
        head: valid_head,
        baseline: valid_base,
    };
    let test = test_head.map(|head| Evaluation {
        head,
        baseline: test_base,
    });
    let info = encoder.info();
    let manifest = Manifest {
        format: FORMAT_VERSION,
        task: req.task.clone(),
        version: 0,
        labels: labels.clone(),
        head: match req.options.head {
            crate::HeadChoice::Linear => HeadKind::Linear,
            crate::HeadChoice::Mlp => HeadKind::Mlp {
                hidden_dim: req.options.hidden_dim,
            },
        },
        input_dim: dim,
        backbone: BackboneRef {
            name: info.name.clone(),
            fingerprint: info.fingerprint.clone(),
            dim,
        },
        training: serde_json::to_value(&req.options).unwrap_or_default(),
        dataset_hash: req.train.hash(),
        created_at: now_rfc3339(),
        metrics: Some(validation.clone()),
    };
    let report = TrainReport {
        task: req.task.clone(),
        n_train: train_texts.len(),
        n_valid: valid_texts.len(),
        epochs: history.len(),
        validation,
        test,
        feature_cache,
        timings: Timings {
            features_s,
            head_s,
            baseline_s,
            total_s: start.elapsed().as_secs_f64(),
        },
    };
    Ok((HeadArtifact { manifest, head }, report))
}

/// Without a validation set, every label must keep one example for validation, or
/// the validation metrics (and the activation gate on them) would measure nothing.
fn check_holdout(labels: &[String], y: &[usize]) -> Result<()> {
    let mut counts = vec![0usize; labels.len()];
    y.iter().for_each(|&l| counts[l] += 1);
    let single: Vec<&str> = labels
        .iter()
        .zip(&counts)
        .filter(|(_, &c)| c < 2)
        .map(|(l, _)| l.as_str())
        .take(5)
        .collect();
    if single.is_empty() {
        return Ok(());
    }
    Err(Error::Dataset(format!(
        "every label needs at least 2 examples (one is held out for validation), or pass a \
         validation set; labels with one example: {single:?}{}",
        if counts.iter().filter(|&&c| c < 2).count() > 5 {
            " ..."
        } else {
            ""
        }
    )))
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Evaluates a stored head on labelled data. Labels unknown to the head count as
/// errors in the data, not as misclassifications.
pub fn evaluate_head(
    encoder: &EncoderHandle,
    cache: &FeatureCache,
    artifact: &HeadArtifact,
    data: &Dataset,
) -> Result<Metrics> {
    artifact.check_backbone(&BackboneRef {
        name: encoder.info().name.clone(),
        fingerprint: encoder.info().fingerprint.clone(),
        dim: encoder.info().dim,
    })?;
    let labels = artifact.head.labels();
    let truth = data
        .examples
        .iter()
        .map(|e| {
            labels.iter().position(|l| *l == e.label).ok_or_else(|| {
                Error::Dataset(format!(
                    "line {}: label {:?} is not one of the head's labels {labels:?}",
                    e.line, e.label
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let (x, _) = cache.features(encoder, &data.texts())?;
    Ok(evaluate(
        labels,
        &truth,
        &argmax_rows(&artifact.head.predict_batch(x.as_slice())?),
    ))
}
