//! The model thread and its handle. One OS thread owns the [`Encoder`] (libtorch's
//! intra-op pool does the parallel work); callers anywhere hold a cheap clone of
//! [`EncoderHandle`] and get answers on a oneshot, as in text-embeddings-inference.
//!
//! Two queues: inference (the server's batches) and background (training features,
//! the CLI). The thread always takes inference work first, and runs waiting
//! inference jobs between the forward passes of a background job, so a training run
//! delays a request by at most one background batch.
use std::{path::PathBuf, sync::Arc, thread};

use tokio::sync::{mpsc, oneshot};

use crate::{
    prepare::Prepare, BackboneInfo, BatchPolicy, Branch, Embeddings, Encoded, Encoder,
    EncoderOptions, Error, Input, Passes, Result,
};

/// Queue depth between callers and the model thread. Callers wait (async) when full.
const QUEUE: usize = 1024;

enum Job {
    Embed {
        inputs: Vec<Input>,
        reply: oneshot::Sender<Result<Embeddings>>,
    },
    EmbedPasses {
        ids: Vec<Encoded>,
        passes: Passes,
        reply: oneshot::Sender<Result<Embeddings>>,
    },
    EmbedBranches {
        ids: Vec<Encoded>,
        branches: Vec<Arc<Branch>>,
        reply: oneshot::Sender<Result<Vec<Embeddings>>>,
    },
}

impl Job {
    /// Runs the job; `between` runs before each forward pass.
    fn run(self, encoder: &Encoder, between: &mut dyn FnMut()) {
        let (result, reply) = match self {
            Job::Embed { inputs, reply } => {
                if reply.is_closed() {
                    return;
                }
                let r = encoder.encode(&inputs).and_then(|ids| {
                    let lens: Vec<usize> = ids.iter().map(Encoded::len).collect();
                    let passes = encoder.batch_policy().passes(&lens);
                    encoder.embed_passes(&ids, &passes, between)
                });
                (r, reply)
            }
            Job::EmbedPasses { ids, passes, reply } => {
                if reply.is_closed() {
                    return;
                }
                (encoder.embed_passes(&ids, &passes, between), reply)
            }
            Job::EmbedBranches {
                ids,
                branches,
                reply,
            } => {
                if !reply.is_closed() {
                    let refs: Vec<&Branch> = branches.iter().map(|b| b.as_ref()).collect();
                    let _ = reply.send(encoder.embed_branches(&ids, &refs, between));
                }
                return;
            }
        };
        let _ = reply.send(result);
    }
}

/// The model thread's loop: inference first, background work batch by batch.
fn serve(encoder: &Encoder, mut urgent: mpsc::Receiver<Job>, mut background: mpsc::Receiver<Job>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    loop {
        let next = match urgent.try_recv() {
            Ok(job) => Some((job, true)),
            Err(_) => match background.try_recv() {
                Ok(job) => Some((job, false)),
                Err(_) => runtime.block_on(async {
                    tokio::select! {
                        biased;
                        Some(job) = urgent.recv() => Some((job, true)),
                        Some(job) = background.recv() => Some((job, false)),
                        else => None,
                    }
                }),
            },
        };
        match next {
            Some((job, true)) => job.run(encoder, &mut || {}),
            Some((job, false)) => job.run(encoder, &mut || {
                while let Ok(job) = urgent.try_recv() {
                    job.run(encoder, &mut || {});
                }
            }),
            None => return,
        }
    }
}

/// Queues the job `make` builds around its reply channel and waits for the answer.
async fn submit(
    queue: &mpsc::Sender<Job>,
    make: impl FnOnce(oneshot::Sender<Result<Embeddings>>) -> Job,
) -> Result<Embeddings> {
    let (reply, rx) = oneshot::channel();
    queue.send(make(reply)).await.map_err(|_| Error::Stopped)?;
    rx.await.map_err(|_| Error::Stopped)?
}

/// A cloneable handle to the model thread.
#[derive(Clone)]
pub struct EncoderHandle {
    tx: mpsc::Sender<Job>,
    background: mpsc::Sender<Job>,
    info: Arc<BackboneInfo>,
    prepare: Prepare,
    policy: BatchPolicy,
}

impl std::fmt::Debug for EncoderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncoderHandle")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl EncoderHandle {
    /// Starts the model thread, loads `dir` on it, runs one warm-up pass, and returns
    /// once the model is ready (or with the load error).
    pub fn spawn(dir: impl Into<PathBuf>, options: &EncoderOptions) -> Result<EncoderHandle> {
        let dir = dir.into();
        let options = options.clone();
        let (tx, rx) = mpsc::channel::<Job>(QUEUE);
        let (background, background_rx) = mpsc::channel::<Job>(QUEUE);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        thread::Builder::new()
            .name("polyhead-model".into())
            .spawn(move || {
                // Loaded here: a runtime sets its threads up on the thread that runs it.
                let encoder = match Encoder::load(&dir, &options).and_then(|e| {
                    e.warm_up()?;
                    Ok(e)
                }) {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let ready = (
                    encoder.info().clone(),
                    encoder.preparation(),
                    encoder.batch_policy(),
                );
                let _ = ready_tx.send(Ok(ready));
                serve(&encoder, rx, background_rx);
            })
            .map_err(|e| Error::Io {
                path: "polyhead-model thread".into(),
                source: e,
            })?;
        let (info, prepare, policy) = ready_rx.recv().map_err(|_| Error::Stopped)??;
        Ok(EncoderHandle {
            tx,
            background,
            info: Arc::new(info),
            prepare,
            policy,
        })
    }

    /// What the thread loaded.
    pub fn info(&self) -> &BackboneInfo {
        &self.info
    }

    /// Token ids per text (truncated, special tokens included), computed on the
    /// caller's thread: the tokenizer is shared, only the model is owned.
    pub fn tokenize(&self, texts: &[impl AsRef<str>]) -> Result<Vec<Vec<u32>>> {
        let tokenizer = self.prepare.tokenizer().ok_or_else(|| {
            Error::Input("this backbone reads images; it has no tokenizer".into())
        })?;
        crate::tokenize::token_ids(tokenizer, texts)
    }

    /// How the model thread groups inputs into forward passes: a batcher budgets
    /// with it and plans its batches' passes with it.
    pub fn batch_policy(&self) -> BatchPolicy {
        self.policy
    }

    /// Prepares `inputs` for the runtime on the caller's thread (tokenizes texts,
    /// decodes and preprocesses pictures).
    pub fn encode(&self, inputs: &[Input]) -> Result<Vec<Encoded>> {
        self.prepare.encode(inputs)
    }

    /// Every window of each text (the first is what `encode` gives; a text longer
    /// than the backbone reads has more, overlapping by [`crate::WINDOW_OVERLAP`]
    /// tokens, at most [`crate::MAX_WINDOWS`]). Texts only.
    pub fn encode_windows(&self, inputs: &[Input]) -> Result<Vec<Vec<Encoded>>> {
        self.prepare.encode_windows(inputs)
    }

    /// Embeds `texts` on the model thread.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Embeddings> {
        let inputs = texts.into_iter().map(Input::Text).collect();
        submit(&self.tx, |reply| Job::Embed { inputs, reply }).await
    }

    /// Embeds pre-tokenized inputs on the model thread, in exactly the `passes`
    /// planned by [`EncoderHandle::batch_policy`]. A caller that drops the future
    /// before the job runs costs no forward pass.
    pub async fn embed_passes(&self, ids: Vec<Encoded>, passes: Passes) -> Result<Embeddings> {
        submit(&self.tx, |reply| Job::EmbedPasses { ids, passes, reply }).await
    }

    /// Embeds prepared texts under each branch on the model thread (inference
    /// priority): the trunk runs once per pass for all of them. One [`Embeddings`]
    /// per branch, in order.
    pub async fn embed_branches(
        &self,
        ids: Vec<Encoded>,
        branches: Vec<Arc<Branch>>,
    ) -> Result<Vec<Embeddings>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::EmbedBranches {
                ids,
                branches,
                reply,
            })
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// [`EncoderHandle::embed_branches`] at background priority, for synchronous
    /// callers (the trainer's evaluation). Must not be called from an async runtime.
    pub fn embed_branches_blocking(
        &self,
        ids: Vec<Encoded>,
        branches: Vec<Arc<Branch>>,
    ) -> Result<Vec<Embeddings>> {
        let (reply, rx) = oneshot::channel();
        self.background
            .blocking_send(Job::EmbedBranches {
                ids,
                branches,
                reply,
            })
            .map_err(|_| Error::Stopped)?;
        rx.blocking_recv().map_err(|_| Error::Stopped)?
    }

    /// Embeds `texts` at background priority from async code: inference work on the
    /// same model thread goes first.
    pub async fn embed_background(&self, texts: Vec<String>) -> Result<Embeddings> {
        let inputs = texts.into_iter().map(Input::Text).collect();
        submit(&self.background, |reply| Job::Embed { inputs, reply }).await
    }

    /// Embeds inputs prepared by [`EncoderHandle::encode`] at background priority,
    /// in the passes the batch policy plans, for synchronous callers (CLI, trainer:
    /// pictures are decoded on their thread, not the model's). Must not be called
    /// from inside an async runtime.
    pub fn embed_encoded_blocking(&self, ids: Vec<Encoded>) -> Result<Embeddings> {
        let lens: Vec<usize> = ids.iter().map(Encoded::len).collect();
        let passes = self.policy.passes(&lens);
        let (reply, rx) = oneshot::channel();
        self.background
            .blocking_send(Job::EmbedPasses { ids, passes, reply })
            .map_err(|_| Error::Stopped)?;
        rx.blocking_recv().map_err(|_| Error::Stopped)?
    }

    /// Embeds `texts` at background priority, for synchronous callers (CLI,
    /// trainer): inference work on the same model thread goes first. Must not be
    /// called from inside an async runtime.
    pub fn embed_blocking(&self, texts: Vec<String>) -> Result<Embeddings> {
        let (reply, rx) = oneshot::channel();
        let inputs = texts.into_iter().map(Input::Text).collect();
        self.background
            .blocking_send(Job::Embed { inputs, reply })
            .map_err(|_| Error::Stopped)?;
        rx.blocking_recv().map_err(|_| Error::Stopped)?
    }
}
