//! The request batcher in front of the model thread. Requests of every task go into
//! one queue; a single task drains it into batches bounded by total tokens and by a
//! short wait for company, skips requests whose caller went away or whose deadline
//! passed, runs one backbone pass per batch and answers every waiter.
//!
//! While the model thread works on one batch, new requests pile up in the queue and
//! form the next batch, so batches grow with load. The wait for company happens only
//! while more requests are on their way (counted from the moment a request knows it
//! needs the backbone, before it tokenizes) or after a batch of several requests (many
//! callers, the rest of whom are about to send): a lone caller's request starts at once.
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use metrics::{counter, histogram};
use polyhead_backbone::{Embeddings, EncoderHandle};
use tokio::sync::{mpsc, oneshot};

use crate::{metrics as m, ServerError};

type Reply = oneshot::Sender<Result<Embeddings, ServerError>>;

struct Item {
    ids: Vec<Vec<u32>>,
    tokens: usize,
    reply: Reply,
    enqueued: Instant,
    deadline: Instant,
}

/// Cloneable handle to the batching task.
#[derive(Debug, Clone)]
pub(crate) struct Batcher {
    tx: mpsc::UnboundedSender<Item>,
    coming: Arc<AtomicUsize>,
}

/// A request on its way to the batcher (tokenizing, queued or in a batch): while it
/// lives, a batch waits for it; dropped when the request has its embeddings or gave up.
#[derive(Debug)]
pub(crate) struct OnTheWay(Arc<AtomicUsize>);

impl Drop for OnTheWay {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Batch limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    /// Most tokens (sum over texts) in one batch; a single larger request runs alone.
    pub max_tokens: usize,
    /// Longest the first request of a batch waits for others.
    pub max_wait: Duration,
}

impl Batcher {
    /// Starts the batching task on the current tokio runtime.
    pub fn spawn(encoder: EncoderHandle, limits: BatchLimits) -> Batcher {
        // Unbounded on purpose: the server's in-flight limit bounds what can be queued,
        // and refuses the excess with RESOURCE_EXHAUSTED before it gets here.
        let (tx, rx) = mpsc::unbounded_channel();
        let coming = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(rx, encoder, limits, coming.clone()));
        Batcher { tx, coming }
    }

    /// Announces a request that will call [`Batcher::embed`]; hold the guard until then.
    pub fn on_the_way(&self) -> OnTheWay {
        self.coming.fetch_add(1, Ordering::SeqCst);
        OnTheWay(self.coming.clone())
    }

    /// Embeds pre-tokenized texts in some batch; rows in input order.
    pub async fn embed(
        &self,
        ids: Vec<Vec<u32>>,
        deadline: Instant,
    ) -> Result<Embeddings, ServerError> {
        let (reply, rx) = oneshot::channel();
        let tokens = ids.iter().map(Vec::len).sum();
        let item = Item {
            ids,
            tokens,
            reply,
            enqueued: Instant::now(),
            deadline,
        };
        self.tx
            .send(item)
            .map_err(|_| ServerError::Unavailable("the batcher has stopped".into()))?;
        rx.await
            .map_err(|_| ServerError::Unavailable("the batcher has stopped".into()))?
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Item>,
    encoder: EncoderHandle,
    limits: BatchLimits,
    coming: Arc<AtomicUsize>,
) {
    let mut carry: Option<Item> = None;
    // Requests in the previous batch.
    let mut last = 0;
    loop {
        let first = match carry.take() {
            Some(item) => item,
            None => match rx.recv().await {
                Some(item) => item,
                None => return,
            },
        };
        let window = tokio::time::Instant::now() + limits.max_wait;
        let mut tokens = first.tokens;
        let mut batch = vec![first];
        loop {
            let next = match rx.try_recv() {
                Ok(item) => Some(item),
                // Nothing queued: wait for company only if another request is on its
                // way (announced but not in this batch), or if the last batch was
                // larger (callers are many, and the rest of them are about to send).
                Err(mpsc::error::TryRecvError::Empty)
                    if coming.load(Ordering::SeqCst) > batch.len() || last > batch.len() =>
                {
                    tokio::time::timeout_at(window, rx.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(_) => None,
            };
            let Some(item) = next else { break };
            if tokens + item.tokens > limits.max_tokens {
                carry = Some(item);
                break;
            }
            tokens += item.tokens;
            batch.push(item);
        }
        last = batch.len();
        run_batch(&encoder, batch).await;
    }
}

async fn run_batch(encoder: &EncoderHandle, batch: Vec<Item>) {
    let now = Instant::now();
    let mut live = Vec::with_capacity(batch.len());
    for item in batch {
        if item.reply.is_closed() {
            counter!(m::BATCH_DROPPED, "reason" => "cancelled").increment(1);
        } else if item.deadline <= now {
            counter!(m::BATCH_DROPPED, "reason" => "deadline").increment(1);
            let _ = item.reply.send(Err(ServerError::DeadlineExceeded(
                "request deadline passed in the queue".into(),
            )));
        } else {
            histogram!(m::QUEUE_WAIT).record(now.duration_since(item.enqueued).as_secs_f64());
            live.push(item);
        }
    }
    if live.is_empty() {
        return;
    }
    let texts: usize = live.iter().map(|i| i.ids.len()).sum();
    histogram!(m::BATCH_SIZE).record(texts as f64);
    histogram!(m::BATCH_TOKENS).record(live.iter().map(|i| i.tokens).sum::<usize>() as f64);
    counter!(m::BACKBONE_TEXTS).increment(texts as u64);
    let mut all = Vec::with_capacity(texts);
    let mut replies = Vec::with_capacity(live.len());
    for item in live {
        replies.push((item.ids.len(), item.reply));
        all.extend(item.ids);
    }
    let start = Instant::now();
    let result = encoder.embed_ids(all).await;
    histogram!(m::FORWARD).record(start.elapsed().as_secs_f64());
    match result {
        Ok(emb) => {
            let dim = emb.dim();
            let mut offset = 0;
            for (n, reply) in replies {
                let rows = emb.as_slice()[offset * dim..(offset + n) * dim].to_vec();
                offset += n;
                let _ = reply.send(Ok(Embeddings::new(dim, rows)));
            }
        }
        Err(e) => {
            // Every waiter gets the error with its kind: a stopped model thread is
            // UNAVAILABLE (retry elsewhere), anything else INTERNAL.
            let stopped = matches!(e, polyhead_backbone::Error::Stopped);
            let msg = format!("backbone: {e}");
            for (_, reply) in replies {
                let err = if stopped {
                    ServerError::Unavailable(msg.clone())
                } else {
                    ServerError::Internal(msg.clone())
                };
                let _ = reply.send(Err(err));
            }
        }
    }
}
