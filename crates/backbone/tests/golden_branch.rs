//! Branches against the frozen pass: a branch whose updates are zero gives the frozen
//! embeddings on the default runtime; a batch mixing branches equals one by one;
//! a branch that does not fit the backbone is refused.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test
mod common;

use common::{cosine, model_dir};
use polyhead_backbone::{Branch, Encoded, Encoder, EncoderOptions, LowRank, TARGETS};

const TEXTS: [&str; 4] = [
    "Congratulations, you won a free cruise! Reply now to claim.",
    "The meeting moved to 3pm; the agenda is attached.",
    "A slow, beautiful film with a cast that never puts a foot wrong.",
    "hi",
];

fn encoder() -> Encoder {
    Encoder::load(&model_dir(), &EncoderOptions::default())
        .unwrap_or_else(|e| panic!("{e} (run scripts/setup.sh first)"))
}

/// A branch over layers `from..depth` with seeded values; `b_scale` 0 makes every
/// update zero (A is random either way, as LoRA starts).
fn branch(enc: &Encoder, from: usize, rank: usize, b_scale: f32, seed: u32) -> Branch {
    let info = enc.info();
    let hidden = info.dim;
    let intermediate = 4 * hidden; // MiniLM-L6: 1536
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state as f32 / u32::MAX as f32) - 0.5
    };
    let mut updates = Vec::new();
    for _ in from..info.layers {
        for t in 0..TARGETS.len() {
            let (i, o) = match t {
                4 => (hidden, intermediate),
                5 => (intermediate, hidden),
                _ => (hidden, hidden),
            };
            let a = (0..rank * i).map(|_| next() * 0.1).collect();
            let b = (0..o * rank).map(|_| next() * b_scale).collect();
            updates.push(LowRank { a, b });
        }
    }
    Branch {
        from_layer: from,
        rank,
        scale: 2.0,
        updates,
    }
}

fn tokens(enc: &Encoder, texts: &[&str]) -> Vec<Encoded> {
    enc.tokenize(texts)
        .unwrap()
        .into_iter()
        .map(Encoded::Tokens)
        .collect()
}

#[test]
fn a_zero_update_branch_gives_the_frozen_embeddings() {
    let enc = encoder();
    let frozen = enc.embed(&TEXTS).unwrap();
    let ids = tokens(&enc, &TEXTS);
    let depth = enc.info().layers;
    assert_eq!(depth, 6);
    for from in [depth - 1, depth - 2, 0] {
        let zero = branch(&enc, from, 4, 0.0, 7);
        let out = enc.embed_branches(&ids, &[&zero], &mut || {}).unwrap();
        for (i, text) in TEXTS.iter().enumerate() {
            let c = cosine(out[0].row(i), frozen.row(i));
            assert!(
                c >= 0.9999,
                "from layer {from} on {} ({}): cosine {c} for {text:?}",
                enc.info().backend,
                enc.info().dtype
            );
        }
    }
}

#[test]
fn a_batch_mixing_branches_equals_one_by_one_and_updates_change_the_answer() {
    let enc = encoder();
    let depth = enc.info().layers;
    let zero = branch(&enc, depth - 2, 4, 0.0, 1);
    let tuned = branch(&enc, depth - 2, 4, 0.2, 2);
    let deep = branch(&enc, depth - 1, 8, 0.2, 3);
    let ids = tokens(&enc, &TEXTS);
    let mixed = enc
        .embed_branches(&ids, &[&zero, &tuned, &deep], &mut || {})
        .unwrap();
    for (b, br) in [&zero, &tuned, &deep].into_iter().enumerate() {
        for (i, text) in TEXTS.iter().enumerate() {
            let alone = enc
                .embed_branches(&tokens(&enc, &[text]), &[br], &mut || {})
                .unwrap();
            let c = cosine(mixed[b].row(i), alone[0].row(0));
            assert!(c >= 0.99999, "branch {b}, text {i}: cosine {c}");
        }
    }
    // The updates are real: a tuned branch moves every embedding off the frozen one.
    for i in 0..TEXTS.len() {
        let c = cosine(mixed[1].row(i), mixed[0].row(i));
        assert!(
            c < 0.999,
            "text {i}: the tuned branch gave the frozen answer ({c})"
        );
    }
}

#[test]
fn a_branch_that_does_not_fit_is_refused_by_name() {
    let enc = encoder();
    let depth = enc.info().layers;
    let ids = tokens(&enc, &TEXTS[..1]);
    let refuse = |b: &Branch, want: &str| {
        let e = enc.embed_branches(&ids, &[b], &mut || {}).unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
    };
    let mut short = branch(&enc, depth - 2, 4, 0.1, 4);
    short.updates.truncate(TARGETS.len());
    refuse(&short, "but the backbone has 6 layers");
    let mut wide = branch(&enc, depth - 1, 4, 0.1, 5);
    wide.updates[4].a.push(0.0);
    refuse(&wide, "intermediate");
    let mut nan = branch(&enc, depth - 1, 4, 0.1, 6);
    nan.updates[2].b[3] = f32::NAN;
    refuse(&nan, "NaN");
    let mut uneven = branch(&enc, depth - 1, 4, 0.1, 6);
    uneven.updates.pop();
    refuse(&uneven, "per adapted layer");
}
