//! Helpers shared by the store tests.
#![allow(dead_code, clippy::unwrap_used)]
use polyhead_heads::{BackboneRef, Dense, Head, HeadArtifact, HeadKind, Manifest, FORMAT_VERSION};

pub fn backbone() -> BackboneRef {
    BackboneRef {
        name: "test".into(),
        fingerprint: "fp-1".into(),
        dim: 3,
        ..Default::default()
    }
}

/// A linear head whose weights carry `marker`, so versions are distinguishable.
pub fn artifact(task: &str, marker: f32) -> HeadArtifact {
    let layer = Dense {
        weight: vec![marker, 0.0, 0.0, 0.0, 1.0, 0.0],
        bias: vec![0.0, 0.0],
        input: 3,
        out: 2,
    };
    let labels = vec!["ham".to_string(), "spam".to_string()];
    let head = Head::new(HeadKind::Linear, vec![layer], labels.clone()).unwrap();
    let manifest = Manifest {
        format: FORMAT_VERSION,
        task: task.into(),
        version: 0,
        labels,
        head: HeadKind::Linear,
        input_dim: 3,
        backbone: backbone(),
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
