//! The model thread serves inference before background work (issue 8, defect 9).
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test
mod common;
use std::{future::Future, pin::Pin};

use common::model_dir;
use polyhead_backbone::{EncoderHandle, EncoderOptions};

/// Polls `f` once; true when it finished.
async fn poll_once<F: Future>(f: &mut Pin<Box<F>>) -> bool {
    tokio::select! {
        biased;
        _ = f.as_mut() => true,
        () = std::future::ready(()) => false,
    }
}

/// A background job is queued first (one poll sends it) and is 50 batches long; an
/// inference job queued after it must be answered while the background job is still
/// running, because the model thread runs waiting inference work between background
/// batches. With one FIFO queue the background job would finish first.
#[test]
fn inference_overtakes_a_queued_background_job() {
    let mut options = EncoderOptions::default();
    options.batch_size(8);
    let handle =
        EncoderHandle::spawn(model_dir(), &options).expect("backbone (run scripts/setup.sh)");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let texts = (0..400)
            .map(|i| format!("background training text number {i} with a few more words in it"))
            .collect();
        let mut background = Box::pin(handle.embed_background(texts));
        assert!(
            !poll_once(&mut background).await,
            "400 texts cannot be done yet"
        );
        let ids = handle.encode(&["an urgent request".into()]).unwrap();
        let passes = handle.batch_policy().passes(&[ids[0].len()]);
        let urgent = handle.embed_passes(ids, passes).await.unwrap();
        assert_eq!(urgent.len(), 1);
        assert!(
            !poll_once(&mut background).await,
            "the background job finished before the urgent one was answered"
        );
        assert_eq!(background.await.unwrap().len(), 400);
    });
}
