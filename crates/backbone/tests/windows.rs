//! Long texts read in windows: the windows cover the whole text, the first is the
//! truncated text, and pooling one window is the plain embedding.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test
mod common;

use common::{cosine, model_dir};
use polyhead_backbone::{
    pool_windows, Encoded, Encoder, EncoderOptions, Input, MAX_WINDOWS, WINDOW_OVERLAP,
};

fn encoder() -> Encoder {
    Encoder::load(&model_dir(), &EncoderOptions::default()).unwrap()
}

/// A text of `n` words, each distinct enough to be its own token run.
fn words(n: usize) -> String {
    (0..n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn tokens(e: &Encoded) -> &[u32] {
    match e {
        Encoded::Tokens(t) => t,
        Encoded::Pixels { .. } => panic!("a text gave pixels"),
    }
}

#[test]
fn a_short_text_is_one_window_equal_to_its_truncated_ids() {
    let enc = encoder();
    let input = [Input::from("A short review: loved it.")];
    let windows = enc.encode_windows(&input).unwrap();
    assert_eq!(windows.len(), 1);
    assert_eq!(windows[0], enc.encode(&input).unwrap());
}

#[test]
fn windows_cover_a_long_text_in_order_with_the_stated_overlap() {
    let enc = encoder();
    let max = enc.info().max_seq_length;
    let text = words(600);
    let input = [Input::Text(text.clone())];
    let windows = enc.encode_windows(&input).unwrap().remove(0);
    let truncated = enc.encode(&input).unwrap().remove(0);
    assert!(windows.len() > 2, "600 words in {} windows", windows.len());
    assert_eq!(
        windows[0], truncated,
        "the first window is the truncated text"
    );
    let (cls, sep) = (tokens(&truncated)[0], *tokens(&truncated).last().unwrap());
    // Every window carries the family's special tokens and fits the backbone.
    for w in &windows {
        let t = tokens(w);
        assert!(t.len() <= max, "a window of {} tokens", t.len());
        assert_eq!((t[0], *t.last().unwrap()), (cls, sep));
    }
    // Joined without their overlap, the windows are the whole text's tokens.
    let mut joined: Vec<u32> = tokens(&windows[0])[1..tokens(&windows[0]).len() - 1].to_vec();
    for w in &windows[1..] {
        let body = &tokens(w)[1..tokens(w).len() - 1];
        assert_eq!(
            &body[..WINDOW_OVERLAP],
            &joined[joined.len() - WINDOW_OVERLAP..],
            "a window starts {WINDOW_OVERLAP} tokens before the last one ended"
        );
        joined.extend_from_slice(&body[WINDOW_OVERLAP..]);
    }
    let tokenizer = enc.tokenizer().unwrap();
    let mut whole = tokenizer.clone();
    whole.with_truncation(None).unwrap();
    let all = whole.encode(text.as_str(), true).unwrap();
    assert_eq!(joined, all.get_ids()[1..all.get_ids().len() - 1].to_vec());
}

#[test]
fn a_very_long_text_is_read_up_to_the_window_limit() {
    let enc = encoder();
    let windows = enc
        .encode_windows(&[Input::Text(words(20_000))])
        .unwrap()
        .remove(0);
    assert_eq!(windows.len(), MAX_WINDOWS);
}

#[test]
fn pooling_one_window_is_the_plain_embedding_and_the_tail_moves_only_windows() {
    let enc = encoder();
    let normalize = enc.info().normalize;
    let head = words(400);
    let a = format!("{head} the film was wonderful, moving and beautifully acted");
    let b = format!("{head} the film was dreadful, boring and badly acted");
    let short = "a wonderful film";
    let inputs: Vec<Input> = [a.as_str(), b.as_str(), short]
        .iter()
        .map(|t| Input::from(*t))
        .collect();
    let windows = enc.encode_windows(&inputs).unwrap();
    let firsts: Vec<Encoded> = windows.iter().map(|w| w[0].clone()).collect();
    let further: Vec<Encoded> = windows.iter().flat_map(|w| w[1..].to_vec()).collect();
    let (firsts, further) = (
        enc.embed_encoded(&firsts).unwrap(),
        enc.embed_encoded(&further).unwrap(),
    );
    let counts: Vec<usize> = windows.iter().map(Vec::len).collect();
    let rows: Vec<&[f32]> = firsts.rows().collect();
    let pooled = pool_windows(&rows, &counts, further.as_slice(), normalize);
    let plain = enc.embed(&[a.as_str(), b.as_str(), short]).unwrap();
    assert!(cosine(&pooled[2], plain.row(2)) >= 0.9999);
    // The truncated texts are the same; the pooled ones differ where the texts do.
    assert!(cosine(plain.row(0), plain.row(1)) >= 0.9999);
    assert!(cosine(&pooled[0], &pooled[1]) < 0.999);
}
