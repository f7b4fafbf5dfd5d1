//! The request batcher in front of the model thread. Requests of every task go into
//! one queue; a single task drains it into batches bounded by the tokens the backbone
//! will compute for them (the encoder's [`BatchPolicy`]: its passes, padding
//! included) and by a short wait for company, skips requests whose caller went away
//! or whose deadline passed, plans each batch's forward passes with the same policy,
//! runs them as one backbone job and answers every waiter.
//!
//! A request larger than one batch is split: a batch takes whole requests from the
//! front of the queue while they fit, or else a part of the front request alone, and
//! a request with texts left goes to the back, behind the requests that arrived
//! meanwhile. So a one-text call waits for at most
//! one batch however large the requests ahead of it, and the rest of a request whose
//! caller left (or whose deadline passed) is never run.
//!
//! While the model thread works on one batch, new requests pile up in the queue and
//! form the next batch, so batches grow with load. The wait for company happens only
//! while more requests are on their way (counted from the moment a request knows it
//! needs the backbone, before it tokenizes) or after a batch of several requests (many
//! callers, the rest of whom are about to send): a lone caller's request starts at once.
use std::{
    collections::VecDeque,
    ops::Range,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use metrics::{counter, histogram};
use polyhead_backbone::{BatchPolicy, Embeddings, Encoded, EncoderHandle};
use tokio::sync::{mpsc, oneshot};

use crate::{metrics as m, ServerError};

type Reply = oneshot::Sender<Result<Embeddings, ServerError>>;

/// One request's texts on their way through the batcher: a request larger than one
/// batch is embedded over several, `next` texts at a time.
struct Item {
    ids: Vec<Encoded>,
    /// Texts already embedded; their rows are in `rows`.
    next: usize,
    rows: Vec<f32>,
    reply: Reply,
    enqueued: Instant,
    /// Whether the request has been in a batch (its queue wait is recorded then).
    started: bool,
    deadline: Instant,
}

/// Whether `queue` holds at least `max_tokens` tokens still to embed (counting stops
/// there: a queue of large requests is not summed whole at every wait).
fn holds_a_batch(queue: &VecDeque<Item>, max_tokens: usize) -> bool {
    let mut tokens = 0;
    queue
        .iter()
        .flat_map(|item| &item.ids[item.next..])
        .any(|ids| {
            tokens += ids.len();
            tokens >= max_tokens
        })
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
    /// Most tokens one batch may cost, as the backbone computes them (its passes,
    /// padding included); a single longer text runs alone.
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

    /// Embeds prepared inputs in some batch; rows in input order.
    pub async fn embed(
        &self,
        ids: Vec<Encoded>,
        deadline: Instant,
    ) -> Result<Embeddings, ServerError> {
        let (reply, rx) = oneshot::channel();
        let item = Item {
            ids,
            next: 0,
            rows: Vec::new(),
            reply,
            enqueued: Instant::now(),
            started: false,
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
    let mut queue: VecDeque<Item> = VecDeque::new();
    // Requests in the previous batch.
    let mut last = 0;
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(item) => queue.push_back(item),
                None => return,
            }
        }
        while let Ok(item) = rx.try_recv() {
            queue.push_back(item);
        }
        // Wait for company only while the queue holds less than a batch and another
        // request is on its way (announced, not queued yet), or the last batch was
        // larger (callers are many, and the rest of them are about to send).
        let window = tokio::time::Instant::now() + limits.max_wait;
        while !holds_a_batch(&queue, limits.max_tokens)
            && (coming.load(Ordering::SeqCst) > queue.len() || last > queue.len())
        {
            match tokio::time::timeout_at(window, rx.recv()).await {
                Ok(Some(item)) => queue.push_back(item),
                _ => break,
            }
        }
        drop_abandoned(&mut queue);
        let policy = encoder.batch_policy();
        let batch = take_batch(&mut queue, &policy, limits.max_tokens);
        if batch.is_empty() {
            continue;
        }
        last = batch.len();
        let unfinished = run_batch(&encoder, batch).await;
        // Arrivals during the batch go ahead of the requests that just had a turn.
        while let Ok(item) = rx.try_recv() {
            queue.push_back(item);
        }
        queue.extend(unfinished);
    }
}

/// Drops queued requests whose caller went away and answers those whose deadline
/// passed, before they cost a forward pass.
fn drop_abandoned(queue: &mut VecDeque<Item>) {
    let now = Instant::now();
    let mut kept = VecDeque::with_capacity(queue.len());
    for item in queue.drain(..) {
        if item.reply.is_closed() {
            counter!(m::BATCH_DROPPED, "reason" => "cancelled").increment(1);
        } else if item.deadline <= now {
            counter!(m::BATCH_DROPPED, "reason" => "deadline").increment(1);
            let _ = item.reply.send(Err(ServerError::DeadlineExceeded(
                "request deadline passed in the queue".into(),
            )));
        } else {
            kept.push_back(item);
        }
    }
    *queue = kept;
}

/// Takes the next batch from the front of `queue`: whole requests while their passes
/// cost at most `max_tokens` under `policy`; or, when the request at the front does
/// not fit whole, the part of it that does (at least one text, however long) as a
/// batch of its own. Returns each request with the range of its texts in this batch,
/// in queue order.
fn take_batch(
    queue: &mut VecDeque<Item>,
    policy: &BatchPolicy,
    max_tokens: usize,
) -> Vec<(Item, Range<usize>)> {
    let mut batch = Vec::new();
    let mut lens: Vec<usize> = Vec::new();
    let mut real = 0;
    while let Some(front) = queue.front() {
        let mut end = front.next;
        while end < front.ids.len() {
            let len = front.ids[end].len();
            let first = batch.is_empty() && end == front.next;
            lens.push(len);
            if !first && !policy.fits(&lens, real + len, max_tokens) {
                lens.pop();
                break;
            }
            real += len;
            end += 1;
        }
        // A part of a request only as a batch of its own: topping up a batch of small
        // requests with a big one's rest would make them wait for a full batch.
        if end == front.next || (end < front.ids.len() && !batch.is_empty()) {
            break;
        }
        let Some(item) = queue.pop_front() else { break };
        let range = item.next..end;
        batch.push((item, range));
    }
    batch
}

/// Runs one batch on the model thread; answers the requests it finished and returns
/// the ones with texts left.
async fn run_batch(encoder: &EncoderHandle, batch: Vec<(Item, Range<usize>)>) -> Vec<Item> {
    let now = Instant::now();
    let texts: usize = batch.iter().map(|(_, r)| r.len()).sum();
    let mut all = Vec::with_capacity(texts);
    let mut items = Vec::with_capacity(batch.len());
    for (mut item, range) in batch {
        if !item.started {
            item.started = true;
            histogram!(m::QUEUE_WAIT).record(now.duration_since(item.enqueued).as_secs_f64());
        }
        all.extend(item.ids[range.clone()].iter_mut().map(std::mem::take));
        items.push((item, range.len()));
    }
    let lens: Vec<usize> = all.iter().map(Encoded::len).collect();
    let policy = encoder.batch_policy();
    let passes = policy.passes(&lens);
    histogram!(m::BATCH_SIZE).record(texts as f64);
    histogram!(m::BATCH_TOKENS).record(lens.iter().sum::<usize>() as f64);
    histogram!(m::BATCH_COST).record(policy.cost(&lens) as f64);
    histogram!(m::BATCH_PASSES).record(passes.len() as f64);
    counter!(m::BACKBONE_TEXTS).increment(texts as u64);
    let start = Instant::now();
    let result = encoder.embed_passes(all, passes).await;
    histogram!(m::FORWARD).record(start.elapsed().as_secs_f64());
    let emb = match result {
        Ok(emb) => emb,
        Err(e) => {
            // Every waiter gets the error with its kind: a stopped model thread is
            // UNAVAILABLE (retry elsewhere), anything else INTERNAL.
            let stopped = matches!(e, polyhead_backbone::Error::Stopped);
            let msg = format!("backbone: {e}");
            for (item, _) in items {
                let err = if stopped {
                    ServerError::Unavailable(msg.clone())
                } else {
                    ServerError::Internal(msg.clone())
                };
                let _ = item.reply.send(Err(err));
            }
            return Vec::new();
        }
    };
    let dim = emb.dim();
    let mut offset = 0;
    let mut unfinished = Vec::new();
    for (mut item, n) in items {
        item.rows
            .extend_from_slice(&emb.as_slice()[offset * dim..(offset + n) * dim]);
        offset += n;
        item.next += n;
        if item.next < item.ids.len() {
            unfinished.push(item);
        } else {
            let rows = std::mem::take(&mut item.rows);
            let _ = item.reply.send(Ok(Embeddings::new(dim, rows)));
        }
    }
    unfinished
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(lens: &[usize]) -> (Item, oneshot::Receiver<Result<Embeddings, ServerError>>) {
        let (reply, rx) = oneshot::channel();
        let item = Item {
            ids: lens.iter().map(|&n| Encoded::Tokens(vec![7; n])).collect(),
            next: 0,
            rows: Vec::new(),
            reply,
            enqueued: Instant::now(),
            started: false,
            deadline: Instant::now() + Duration::from_secs(60),
        };
        (item, rx)
    }

    /// A padded runtime's policy with room for any number of rows.
    fn policy() -> BatchPolicy {
        BatchPolicy::new(polyhead_backbone::Padding::ToLongest, 1024, 1 << 20)
    }

    fn take(queue: &mut VecDeque<Item>, max_tokens: usize) -> Vec<(Item, Range<usize>)> {
        take_batch(queue, &policy(), max_tokens)
    }

    fn ranges(batch: &[(Item, Range<usize>)]) -> Vec<Range<usize>> {
        batch.iter().map(|(_, r)| r.clone()).collect()
    }

    #[test]
    fn a_request_larger_than_a_batch_is_split_within_the_budget() {
        let (big, _rx) = item(&[256; 10]);
        let mut queue = VecDeque::from([big]);
        let batch = take(&mut queue, 1000);
        assert_eq!(ranges(&batch), vec![0..3]);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_text_longer_than_the_budget_runs_alone() {
        let (long, _a) = item(&[300, 5]);
        let (short, _b) = item(&[5]);
        let mut queue = VecDeque::from([long, short]);
        let batch = take(&mut queue, 100);
        assert_eq!(ranges(&batch), vec![0..1]);
        assert_eq!(queue.len(), 1, "the short request waits for the next batch");
    }

    #[test]
    fn whole_requests_share_a_batch_while_they_fit() {
        let (a, _a) = item(&[10, 10]);
        let (b, _b) = item(&[30]);
        let (c, _c) = item(&[50, 50]);
        let mut queue = VecDeque::from([a, b, c]);
        let batch = take(&mut queue, 100);
        assert_eq!(ranges(&batch), vec![0..2, 0..1], "c does not fit whole");
        assert_eq!(queue.len(), 1);
        let batch = take(&mut queue, 100);
        assert_eq!(ranges(&batch), vec![0..2]);
    }

    #[test]
    fn a_caller_queued_behind_a_huge_request_waits_one_batch() {
        // The huge request's rest goes behind the call that arrived meanwhile.
        let (mut huge, _h) = item(&[256; 255]);
        huge.next = 8;
        let (one, _o) = item(&[12]);
        let mut queue = VecDeque::from([one, huge]);
        let batch = take(&mut queue, 2048);
        assert_eq!(
            ranges(&batch),
            vec![0..1],
            "not topped up with the huge rest"
        );
        let batch = take(&mut queue, 2048);
        assert_eq!(ranges(&batch), vec![8..16]);
    }

    #[test]
    fn a_batch_is_budgeted_by_what_its_passes_cost_padding_included() {
        // Real tokens 100 + 10 x 10 = 200 fit a budget of 200 only unpadded; planned
        // as passes ([100], [10 x 10]) they cost 200 too, and one more 10-token text
        // would cost 210.
        let (long, _a) = item(&[100]);
        let (short, _b) = item(&[10; 10]);
        let (more, _c) = item(&[10]);
        let mut queue = VecDeque::from([long, short, more]);
        let batch = take(&mut queue, 200);
        assert_eq!(ranges(&batch), vec![0..1, 0..10]);
        let lens: Vec<usize> = [100].into_iter().chain([10; 10]).collect();
        assert_eq!(policy().cost(&lens), 200);
        // Mixed lengths that would pad past the budget in one pass are split into
        // passes, and the batch holds what those passes cost.
        let (mixed, _d) = item(&[60, 12, 12, 12, 12, 12, 12, 12, 12]);
        let mut queue = VecDeque::from([mixed]);
        let batch = take(&mut queue, 160);
        assert_eq!(ranges(&batch), vec![0..9], "60 + 8 x 12 = 156 as passes");
        let p = policy().passes(&[60, 12, 12, 12, 12, 12, 12, 12, 12]);
        assert_eq!(p.len(), 2, "the long text runs in a pass of its own: {p:?}");
    }

    #[test]
    fn abandoned_and_late_requests_are_dropped_before_a_batch() {
        let (gone, rx) = item(&[5]);
        drop(rx);
        let (mut late, late_rx) = item(&[5]);
        late.deadline = Instant::now();
        let (live, _l) = item(&[5]);
        let mut queue = VecDeque::from([gone, late, live]);
        drop_abandoned(&mut queue);
        assert_eq!(queue.len(), 1);
        let answer = late_rx.blocking_recv().expect("an answer");
        assert!(matches!(answer, Err(ServerError::DeadlineExceeded(_))));
    }
}
