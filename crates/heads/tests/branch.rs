//! A head with a branch: both stores carry the branch byte for byte as part of the
//! version, decoding refuses a branch whose tensors do not match its spec, and a
//! backbone of another depth or other widths refuses it.
#![allow(clippy::unwrap_used)]
mod common;

use common::{artifact, backbone};
use polyhead_heads::{
    BackboneRef, BranchSpec, BranchTarget, Error, FsHeadStore, HeadArtifact, HeadStore, PgHeadStore,
};

fn targets() -> Vec<BranchTarget> {
    vec![
        BranchTarget {
            name: "query".into(),
            input: 3,
            output: 3,
        },
        BranchTarget {
            name: "intermediate".into(),
            input: 3,
            output: 5,
        },
    ]
}

/// The running backbone the branch fits: 4 layers, these targets.
fn running() -> BackboneRef {
    BackboneRef {
        layers: 4,
        branch_targets: targets(),
        ..backbone()
    }
}

/// `task` with a rank-2 branch over layers 2..4 whose values count up from `base`.
fn adapted(task: &str, base: f32) -> HeadArtifact {
    let mut a = artifact(task, 1.0);
    let spec = BranchSpec {
        from_layer: 2,
        depth: 4,
        rank: 2,
        scale: 2.0,
        targets: targets(),
    };
    let mut next = base;
    let mut values = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                next += 0.25;
                next
            })
            .collect()
    };
    let mut updates = Vec::new();
    for _layer in 0..2 {
        for t in &spec.targets {
            updates.push((values(2 * t.input), values(t.output * 2)));
        }
    }
    a.manifest.branch = Some(spec);
    a.branch = Some(updates);
    a
}

fn roundtrip(a: &HeadArtifact) -> polyhead_heads::Result<HeadArtifact> {
    HeadArtifact::decode(&a.manifest_json(), &a.safetensors().unwrap())
}

#[test]
fn a_branch_survives_encoding_and_is_checked_against_the_backbone() {
    let a = adapted("t", 0.0);
    let back = roundtrip(&a).unwrap();
    assert_eq!(back.branch, a.branch);
    assert_eq!(back.manifest.branch, a.manifest.branch);
    back.check_backbone(&running()).unwrap();

    // Other depth, other widths, no branch support: refused, saying why.
    let deeper = BackboneRef {
        layers: 6,
        ..running()
    };
    let e = back.check_backbone(&deeper).unwrap_err().to_string();
    assert!(e.contains("4 layers; this one has 6"), "{e}");
    let mut wide = targets();
    wide[1].output = 7;
    let other = BackboneRef {
        branch_targets: wide,
        ..running()
    };
    let e = back.check_backbone(&other).unwrap_err().to_string();
    assert!(e.contains("intermediate 5x3"), "{e}");
    let e = back.check_backbone(&backbone()).unwrap_err().to_string();
    assert!(e.contains("takes no branch"), "{e}");
    // A frozen head still serves every backbone of its fingerprint.
    artifact("f", 1.0).check_backbone(&deeper).unwrap();
}

#[test]
fn a_branch_whose_tensors_do_not_match_its_spec_is_refused() {
    let refused = |a: &HeadArtifact, want: &str| match roundtrip(a) {
        Err(Error::InvalidArtifact(m)) => assert!(m.contains(want), "{m}"),
        other => panic!("accepted or wrong error: {other:?}"),
    };
    // Tensors of another shape than the manifest's rank says.
    let good = adapted("t", 0.0).safetensors().unwrap();
    let mut rank1 = adapted("t", 0.0);
    rank1.manifest.branch.as_mut().unwrap().rank = 1;
    match HeadArtifact::decode(&rank1.manifest_json(), &good) {
        Err(Error::InvalidArtifact(m)) => {
            assert!(
                m.contains("branch.2.query.a") && m.contains("expected [1, 3]"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    // Values that do not fill the shape cannot even be encoded.
    let mut short = adapted("t", 0.0);
    short.branch.as_mut().unwrap()[3].0.pop();
    assert!(short.safetensors().is_err());
    let mut nan = adapted("t", 0.0);
    nan.branch.as_mut().unwrap()[1].1[2] = f32::INFINITY;
    refused(&nan, "NaN or Inf");
    // The spec promises more layers than the tensors hold.
    let mut missing = adapted("t", 0.0);
    missing.manifest.branch.as_mut().unwrap().from_layer = 1;
    missing.manifest.branch.as_mut().unwrap().depth = 4;
    match HeadArtifact::decode(&missing.manifest_json(), &good) {
        Err(Error::InvalidArtifact(m)) => assert!(m.contains("missing tensor"), "{m}"),
        other => panic!("{other:?}"),
    }
    let mut nothing = adapted("t", 0.0);
    nothing.manifest.branch.as_mut().unwrap().from_layer = 4;
    refused(&nothing, "leaves no layer");
    let mut huge = adapted("t", 0.0);
    huge.manifest.branch.as_mut().unwrap().targets[0].input = usize::MAX / 4;
    match HeadArtifact::decode(&huge.manifest_json(), &good) {
        Err(Error::InvalidArtifact(m)) => assert!(m.contains("at most"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn both_stores_carry_the_branch_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsHeadStore::open(dir.path()).unwrap();
    let a = adapted("t", 0.5);
    let v = fs.put(&a).unwrap();
    let loaded = fs.load("t", v).unwrap();
    assert_eq!(loaded.branch, a.branch);
    assert_eq!(loaded.safetensors().unwrap(), a.safetensors().unwrap());

    let db = polyhead_heads::testing::TestDatabase::create();
    let pg = PgHeadStore::open(db.url(), Some(running())).unwrap();
    let v = pg.put(&a).unwrap();
    let loaded = pg.load("t", v).unwrap();
    assert_eq!(loaded.branch, a.branch);
    assert_eq!(loaded.safetensors().unwrap(), a.safetensors().unwrap());
}
