//! Property-based fuzzing of artifact decoding (issue 8): no input, however damaged,
//! makes decoding panic, and whatever decodes serves finite probabilities.
//! `PROPTEST_CASES` sets the number of inputs (scripts/fuzz.sh runs many more).
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test
use polyhead_heads::{
    BackboneRef, Dense, Head, HeadArtifact, HeadKind, Lexicon, Manifest, FORMAT_VERSION,
};
use proptest::prelude::*;

fn valid(kind: HeadKind, dim: usize, labels: usize) -> HeadArtifact {
    let names: Vec<String> = (0..labels).map(|i| format!("l{i}")).collect();
    let layer = |input: usize, out: usize| Dense {
        weight: (0..input * out).map(|i| (i % 5) as f32 - 2.0).collect(),
        bias: vec![0.5; out],
        input,
        out,
    };
    let (head, kind) = match kind {
        HeadKind::Linear => (
            Head::new(kind, vec![layer(dim, labels)], names.clone()).unwrap(),
            kind,
        ),
        HeadKind::Mlp { hidden_dim } => {
            let layers = vec![layer(dim, hidden_dim), layer(hidden_dim, labels)];
            (Head::new(kind, layers, names.clone()).unwrap(), kind)
        }
        HeadKind::Hybrid { .. } => {
            let lexicon = Lexicon::fit(&["free money now", "team meeting notes"], 10);
            let v = lexicon.len();
            let head = Head::hybrid(layer(dim + v, labels), lexicon, names.clone()).unwrap();
            (head, HeadKind::Hybrid { vocab_size: v })
        }
    };
    let manifest = Manifest {
        format: FORMAT_VERSION,
        task: "fuzz".into(),
        version: 1,
        labels: names,
        head: kind,
        input_dim: dim,
        backbone: BackboneRef {
            name: "b".into(),
            fingerprint: "f".into(),
            dim,
            ..Default::default()
        },
        training: serde_json::Value::Null,
        dataset_hash: String::new(),
        created_at: "2026-01-01T00:00:00Z".into(),
        metrics: None,
        selection: None,
        branch: None,
        reads: Default::default(),
    };
    HeadArtifact {
        manifest,
        head,
        branch: None,
    }
}

/// Whatever decodes must predict a distribution without panicking.
fn check_decoded(manifest: &[u8], weights: &[u8]) {
    if let Ok(a) = HeadArtifact::decode(manifest, weights) {
        let p = a
            .head
            .predict(&vec![0.25; a.manifest.input_dim], "free money now")
            .unwrap();
        assert_eq!(p.len(), a.manifest.labels.len());
        assert!(p.iter().all(|v| v.is_finite()));
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-3);
    }
}

fn kinds() -> impl Strategy<Value = HeadKind> {
    prop_oneof![
        Just(HeadKind::Linear),
        (1usize..6).prop_map(|h| HeadKind::Mlp { hidden_dim: h })
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(m in proptest::collection::vec(any::<u8>(), 0..512),
                                   w in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_decoded(&m, &w);
    }

    #[test]
    fn damaged_valid_artifacts_never_panic(kind in kinds(), dim in 1usize..8, labels in 2usize..5,
                                           flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
                                           cut in any::<usize>(), in_manifest in any::<bool>()) {
        let a = valid(kind, dim, labels);
        let (mut m, mut w) = (a.manifest_json(), a.safetensors().unwrap());
        let target = if in_manifest { &mut m } else { &mut w };
        for (at, byte) in flips {
            let i = at % target.len();
            target[i] = byte;
        }
        if cut % 3 == 0 {
            let keep = cut % (target.len() + 1);
            target.truncate(keep);
        }
        check_decoded(&m, &w);
    }

    #[test]
    fn manifests_with_hostile_fields_never_panic(dim in any::<u32>(), hidden in any::<u32>(),
                                                 labels in proptest::collection::vec(".{0,3}", 0..6),
                                                 task in ".{0,70}") {
        let a = valid(HeadKind::Linear, 3, 2);
        let mut v = serde_json::to_value(&a.manifest).unwrap();
        v["input_dim"] = dim.into();
        v["labels"] = labels.into();
        v["task"] = task.into();
        if hidden % 2 == 0 {
            v["head"] = serde_json::json!({"kind": "mlp", "hidden_dim": hidden});
        }
        check_decoded(&serde_json::to_vec(&v).unwrap(), &a.safetensors().unwrap());
    }
}
