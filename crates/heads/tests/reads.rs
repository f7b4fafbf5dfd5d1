//! Heads that read every window of a long text: recorded in the manifest only when
//! they do, kept through encode/decode, and refused where they cannot be served.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test
mod common;

use common::{artifact, backbone};
use polyhead_heads::{BackboneRef, HeadArtifact, Reads};

fn windowed() -> HeadArtifact {
    let mut a = artifact("reviews", 1.0);
    a.manifest.reads = Reads::Windows;
    a
}

fn text_backbone() -> BackboneRef {
    BackboneRef {
        reads_text: true,
        ..backbone()
    }
}

#[test]
fn a_head_that_reads_the_truncated_text_has_the_manifest_it_always_had() {
    let json = String::from_utf8(artifact("spam", 1.0).manifest_json()).unwrap();
    assert!(!json.contains("reads"), "{json}");
}

#[test]
fn a_windowed_head_survives_encode_and_decode() {
    let a = windowed();
    let json = a.manifest_json();
    assert!(String::from_utf8_lossy(&json).contains(r#""reads": "windows""#));
    let back = HeadArtifact::decode(&json, &a.safetensors().unwrap()).unwrap();
    assert_eq!(back.manifest.reads, Reads::Windows);
    back.check_backbone(&text_backbone()).unwrap();
}

#[test]
fn a_windowed_head_is_refused_by_a_backbone_that_reads_pictures() {
    let e = windowed()
        .check_backbone(&backbone())
        .unwrap_err()
        .to_string();
    assert!(e.contains("reads texts in windows"), "{e}");
    // The same head reading the truncated text serves it.
    artifact("reviews", 1.0)
        .check_backbone(&backbone())
        .unwrap();
}

#[test]
fn a_windowed_manifest_with_a_branch_is_refused_at_decode() {
    let a = windowed();
    let mut json: serde_json::Value = serde_json::from_slice(&a.manifest_json()).unwrap();
    json["branch"] = serde_json::json!({
        "from_layer": 2, "depth": 4, "rank": 2, "scale": 1.0,
        "targets": [{"name": "query", "output": 3, "input": 3}]
    });
    let bytes = serde_json::to_vec(&json).unwrap();
    let e = HeadArtifact::decode(&bytes, &a.safetensors().unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("a branch reads the truncated text only"), "{e}");
}

#[test]
fn an_unknown_reading_is_refused_by_name() {
    let a = artifact("spam", 1.0);
    let mut json: serde_json::Value = serde_json::from_slice(&a.manifest_json()).unwrap();
    json["reads"] = serde_json::json!("sentences");
    let bytes = serde_json::to_vec(&json).unwrap();
    let e = HeadArtifact::decode(&bytes, &a.safetensors().unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("sentences"), "{e}");
}
