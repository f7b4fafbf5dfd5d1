//! Training behaviour: determinism, error cases, cache reuse, end to end on the real
//! backbone with a small dataset.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test
use polyhead_backbone::testing::model_dir;

use polyhead_backbone::{EncoderHandle, EncoderOptions};
use polyhead_trainer::{
    train_head, train_task, Budget, Dataset, Error, FeatureCache, HeadChoice, Split, TrainOptions,
    TrainRequest,
};

/// The tests of this file run one at a time: bit-identical weights are promised for
/// runs that do not overlap other CPU-heavy libtorch work in the same process (see
/// `train_head`'s docs), and two tests here run the backbone.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Two Gaussian-ish blobs in 8 dims, deterministic.
fn blobs(n: usize) -> (Vec<f32>, Vec<usize>) {
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let c = i % 2;
        for d in 0..8 {
            let noise = (((i * 31 + d * 17) % 13) as f32 - 6.0) / 10.0;
            x.push(if d == c { 2.0 } else { 0.0 } + noise);
        }
        y.push(c);
    }
    (x, y)
}

fn fit(o: &TrainOptions) -> polyhead_heads::Head {
    let (x, y) = blobs(80);
    let (xv, yv) = blobs(20);
    let labels = vec!["a".to_string(), "b".to_string()];
    let (head, history) = train_head(
        &Split {
            features: &x,
            labels: &y,
        },
        &Split {
            features: &xv,
            labels: &yv,
        },
        8,
        &labels,
        o,
        &Budget::unlimited(),
        &mut |_| {},
    )
    .unwrap();
    assert!(!history.is_empty());
    head
}

#[test]
fn same_seed_gives_identical_weights() {
    let _serial = serial();
    for head in [HeadChoice::Linear, HeadChoice::Mlp] {
        let o = TrainOptions {
            head,
            max_epochs: 30,
            seed: 7,
            ..Default::default()
        };
        let a = fit(&o);
        let b = fit(&o);
        assert_eq!(a, b, "{head:?}: same seed must give bit-identical weights");
        let c = fit(&TrainOptions {
            seed: 8,
            ..o.clone()
        });
        assert_ne!(a, c, "{head:?}: another seed should give other weights");
    }
}

#[test]
fn learns_separable_blobs() {
    let _serial = serial();
    let head = fit(&TrainOptions::default());
    let (x, y) = blobs(20);
    let correct = x.chunks(8).zip(&y).filter(|(r, &c)| {
        let p = head.predict(r, "").unwrap();
        usize::from(p[1] > p[0]) == c
    });
    assert!(correct.count() >= 19);
}

fn pairs(rows: &[(&str, &str)]) -> Dataset {
    Dataset::from_pairs(rows.iter().map(|(t, l)| (t.to_string(), l.to_string()))).unwrap()
}

fn small() -> Dataset {
    let spam = [
        "WIN a FREE iPhone now",
        "cheap meds online, no prescription",
        "You won $1000, claim your prize",
        "Hot singles in your area",
        "Lowest mortgage rates, act now",
        "Earn money from home fast",
        "Limited offer: 90% discount on watches",
        "Click here to claim your reward",
    ];
    let ham = [
        "Can we meet tomorrow at 10?",
        "Here are the notes from the design review",
        "Lunch on Friday?",
        "The build is green again after the fix",
        "Please review my pull request",
        "Happy birthday, see you tonight",
        "Minutes of the quarterly planning meeting",
        "Your flight itinerary for next week",
    ];
    let mut rows: Vec<(&str, &str)> = spam.iter().map(|t| (*t, "spam")).collect();
    rows.extend(ham.iter().map(|t| (*t, "ham")));
    pairs(&rows)
}

#[test]
fn end_to_end_on_real_backbone_with_cache() {
    let _serial = serial();
    let encoder = EncoderHandle::spawn(model_dir(), &EncoderOptions::default())
        .expect("backbone (run scripts/setup.sh)");
    let dir = tempfile::tempdir().unwrap();
    let cache = FeatureCache::new(dir.path());
    let req = TrainRequest {
        task: "spam".into(),
        train: small(),
        valid: None,
        test: Some(pairs(&[
            ("Claim your free prize now!!!", "spam"),
            ("Agenda for Monday's standup", "ham"),
        ])),
        options: TrainOptions {
            max_epochs: 100,
            ..Default::default()
        },
        budget: Budget::unlimited(),
    };
    let (artifact, report) = train_task(&encoder, &cache, &req, &mut |_| {}).unwrap();
    assert_eq!(report.feature_cache.hits, 0);
    assert_eq!(artifact.manifest.labels, vec!["ham", "spam"]);
    assert_eq!(
        artifact.manifest.backbone.fingerprint,
        encoder.info().fingerprint
    );
    assert!(report.validation.baseline.is_some());
    let test = report.test.as_ref().unwrap();
    assert_eq!(test.head.accuracy, 1.0, "{test:?}");
    // Second run: every feature comes from the cache, and the result is identical.
    let (again, report2) = train_task(&encoder, &cache, &req, &mut |_| {}).unwrap();
    assert_eq!(report2.feature_cache.misses, 0);
    assert_eq!(report2.feature_cache.hits, 18);
    assert_eq!(again.head, artifact.head);
}

#[test]
fn label_only_in_validation_is_an_error() {
    let _serial = serial();
    let encoder = EncoderHandle::spawn(model_dir(), &EncoderOptions::default()).unwrap();
    let req = TrainRequest {
        task: "t".into(),
        train: small(),
        valid: Some(pairs(&[("hello", "ham"), ("buy now", "promo")])),
        test: None,
        options: TrainOptions::default(),
        budget: Budget::unlimited(),
    };
    let err = train_task(&encoder, &FeatureCache::disabled(), &req, &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::Dataset(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("validation line 2") && msg.contains("promo"),
        "{msg}"
    );

    let bad_name = TrainRequest {
        task: "../x".into(),
        valid: None,
        ..req.clone()
    };
    assert!(train_task(&encoder, &FeatureCache::disabled(), &bad_name, &mut |_| {}).is_err());
    let one_label = TrainRequest {
        train: pairs(&[("a", "x"), ("b", "x")]),
        valid: None,
        ..req
    };
    let err = train_task(&encoder, &FeatureCache::disabled(), &one_label, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("at least 2 labels"), "{err}");
}

#[test]
fn a_label_without_a_validation_example_is_refused() {
    let _serial = serial();
    let encoder = EncoderHandle::spawn(model_dir(), &EncoderOptions::default()).unwrap();
    // Two rows, two labels: nothing could be held out, so validation would be n=0.
    let req = TrainRequest {
        task: "t".into(),
        train: pairs(&[("first", "1"), ("second", "2")]),
        valid: None,
        test: None,
        options: TrainOptions::default(),
        budget: Budget::unlimited(),
    };
    let err = train_task(&encoder, &FeatureCache::disabled(), &req, &mut |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Dataset(_)) && msg.contains("at least 2 examples"),
        "{msg}"
    );
    // With a validation set given, the same rows train.
    let ok = TrainRequest {
        valid: Some(pairs(&[("third", "1"), ("fourth", "2")])),
        ..req
    };
    assert!(train_task(&encoder, &FeatureCache::disabled(), &ok, &mut |_| {}).is_ok());
}

#[test]
fn a_cancelled_or_late_run_stops_with_its_reason() {
    let _serial = serial();
    let encoder = EncoderHandle::spawn(model_dir(), &EncoderOptions::default()).unwrap();
    let budget = Budget::unlimited();
    budget.cancel();
    let req = TrainRequest {
        task: "t".into(),
        train: small(),
        valid: None,
        test: None,
        options: TrainOptions::default(),
        budget,
    };
    let err = train_task(&encoder, &FeatureCache::disabled(), &req, &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::Cancelled(_)), "{err}");
    // A deadline that passes during training stops it between steps.
    let late = TrainRequest {
        budget: Budget::within(std::time::Duration::from_millis(1)),
        options: TrainOptions {
            max_epochs: 10_000,
            min_steps: 1_000_000,
            ..Default::default()
        },
        ..req
    };
    std::thread::sleep(std::time::Duration::from_millis(5));
    let err = train_task(&encoder, &FeatureCache::disabled(), &late, &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::DeadlineExceeded(_)), "{err}");
}

/// Issue 7: the test split is only scored. Training with two different test sets
/// (one with every label flipped) gives byte-identical heads, the same selection and
/// the same validation metrics; only the test scores differ.
#[test]
fn the_test_split_never_reaches_training_or_selection() {
    let _serial = serial();
    let encoder = EncoderHandle::spawn(model_dir(), &EncoderOptions::default()).unwrap();
    let test = pairs(&[
        ("Claim your free prize now!!!", "spam"),
        ("Agenda for Monday's standup", "ham"),
        ("Cheap loans approved instantly", "spam"),
        ("Notes from the design review", "ham"),
    ]);
    let flipped = pairs(&[
        ("Claim your free prize now!!!", "ham"),
        ("Agenda for Monday's standup", "spam"),
        ("Cheap loans approved instantly", "ham"),
        ("Notes from the design review", "spam"),
    ]);
    let run = |t: Dataset| {
        let req = TrainRequest {
            task: "t".into(),
            train: small(),
            valid: None,
            test: Some(t),
            options: TrainOptions::default(),
            budget: Budget::unlimited(),
        };
        train_task(&encoder, &FeatureCache::disabled(), &req, &mut |_| {}).unwrap()
    };
    let (a, ra) = run(test);
    let (b, rb) = run(flipped);
    assert_eq!(a.safetensors().unwrap(), b.safetensors().unwrap());
    assert_eq!(a.manifest.selection, b.manifest.selection);
    assert_eq!(a.manifest.metrics, b.manifest.metrics);
    let (ta, tb) = (
        ra.test.unwrap().head.accuracy,
        rb.test.unwrap().head.accuracy,
    );
    assert!(
        (ta + tb - 1.0).abs() < 1e-9,
        "flipped labels score 1 - accuracy: {ta} {tb}"
    );
    assert!(
        a.manifest.selection.is_some(),
        "auto records its candidates"
    );
}
