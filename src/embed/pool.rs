//! The embedder's worker threads: started once with the model, kept for the life of the
//! process, fed from one queue.
//!
//! A call (the texts of one [`super::Embedder::embed`] or `embed_owned`) enters the queue
//! whole. The first free worker tokenizes it and cuts it into batches, puts all but one of the
//! batches at the front of the queue (so a call finishes before later calls start: each call's
//! latency stays short) and runs the one it kept; the other workers take the rest as they free
//! up. The worker that completes the last batch sends the vectors back, in input order,
//! through the call's reply: a channel the blocking caller waits on, or a oneshot an async
//! caller awaits.
//!
//! # Cancellation
//! A caller that stops waiting (a dropped future closes its oneshot) abandons the call: the
//! workers skip its remaining batches and nothing is sent. Workers never block on a caller, so
//! an abandoned call cannot wedge one.
//!
//! # Error handling
//! The first failing batch fails the whole call with its error; the call's other batches are
//! skipped. A panic inside a batch is caught, reported to the caller as
//! [`EmbedError::Internal`], and the worker rebuilds its state and carries on.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;

use super::EmbedError;
use super::batching::{Batch, restore_order};

/// What the pool runs: tokenizing and batching, and the model on one batch.
pub(crate) trait Work: Send + Sync + 'static {
    /// A worker's own state (buffers, a tract execution state).
    type State;
    fn spawn_state(&self) -> Result<Self::State, EmbedError>;
    /// Token ids of every text, and the batches to run them in.
    fn plan(&self, texts: &[String]) -> Result<(Vec<Vec<i64>>, Vec<Batch>), EmbedError>;
    /// One vector per text of `batch`, in the batch's order.
    fn run(
        &self,
        state: &mut Self::State,
        tokens: &[Vec<i64>],
        batch: &Batch,
    ) -> Result<Vec<Vec<f32>>, EmbedError>;
}

pub(crate) type Vectors = Result<Vec<Vec<f32>>, EmbedError>;

/// Where a call's result goes.
pub(crate) enum Reply {
    Blocking(std::sync::mpsc::SyncSender<Vectors>),
    Async(tokio::sync::oneshot::Sender<Vectors>),
}

impl Reply {
    fn send(self, result: Vectors) {
        // A caller that went away does not want the result: dropping it is the point.
        match self {
            Reply::Blocking(tx) => drop(tx.send(result)),
            Reply::Async(tx) => drop(tx.send(result)),
        }
    }

    fn abandoned(&self) -> bool {
        match self {
            // The blocking caller waits until it has an answer.
            Reply::Blocking(_) => false,
            Reply::Async(tx) => tx.is_closed(),
        }
    }
}

struct Plan {
    tokens: Vec<Vec<i64>>,
    batches: Vec<Batch>,
}

struct Progress {
    reply: Option<Reply>,
    done: Vec<(usize, Vec<f32>)>,
    remaining: usize,
}

/// One call on its way through the pool.
struct Call {
    texts: Vec<String>,
    plan: OnceLock<Plan>,
    progress: Mutex<Progress>,
}

impl Call {
    fn progress(&self) -> MutexGuard<'_, Progress> {
        // A panic while this lock is held leaves plain data behind; keep going.
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the call's remaining batches can be skipped: it failed or its caller left.
    fn finished_or_abandoned(&self) -> bool {
        self.progress().reply.as_ref().is_none_or(Reply::abandoned)
    }

    fn fail(&self, error: EmbedError) {
        if let Some(reply) = self.progress().reply.take() {
            reply.send(Err(error));
        }
    }

    /// Record one batch (its vectors, or nothing if skipped); the last one replies.
    fn batch_done(&self, vectors: Vec<(usize, Vec<f32>)>) {
        let mut p = self.progress();
        p.done.extend(vectors);
        p.remaining = p.remaining.saturating_sub(1);
        if p.remaining == 0
            && let Some(reply) = p.reply.take()
        {
            let done = std::mem::take(&mut p.done);
            drop(p);
            let vectors = restore_order(self.texts.len(), done).ok_or_else(|| {
                EmbedError::Internal("batches did not cover every text exactly once".to_owned())
            });
            reply.send(vectors);
        }
    }
}

enum Job {
    /// Tokenize and batch a call.
    Plan(Arc<Call>),
    /// Run batch `n` of a planned call.
    Batch(Arc<Call>, usize),
}

struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

struct Shared<W> {
    work: W,
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl<W> Shared<W> {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The worker threads and their queue; dropping it lets the workers finish the queue and exit.
pub(crate) struct Pool<W: Work> {
    shared: Arc<Shared<W>>,
    handles: Vec<JoinHandle<()>>,
}

impl<W: Work> std::fmt::Debug for Pool<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &self.handles.len())
            .finish_non_exhaustive()
    }
}

impl<W: Work> Pool<W> {
    /// Start `threads` workers, each with its own state; fails if a state cannot be made.
    pub fn start(work: W, threads: usize) -> Result<Pool<W>, EmbedError> {
        let shared = Arc::new(Shared {
            work,
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let mut pool = Pool {
            shared: Arc::clone(&shared),
            handles: Vec::new(),
        };
        for i in 0..threads.max(1) {
            let shared = Arc::clone(&shared);
            let started = started_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("vecsync-embed-{i}"))
                .spawn(move || match shared.work.spawn_state() {
                    Ok(state) => {
                        drop(started.send(Ok(())));
                        worker(&shared, state);
                    }
                    Err(e) => drop(started.send(Err(e))),
                })
                .map_err(|e| {
                    EmbedError::Internal(format!("cannot start an embedding thread: {e}"))
                })?;
            pool.handles.push(handle);
        }
        drop(started_tx);
        for _ in 0..pool.handles.len() {
            // Dropping `pool` on error closes the queue and joins the started workers.
            match started_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(EmbedError::Internal(
                        "an embedding thread died while starting".to_owned(),
                    ));
                }
            }
        }
        Ok(pool)
    }

    pub fn threads(&self) -> usize {
        self.handles.len()
    }

    pub fn work(&self) -> &W {
        &self.shared.work
    }

    /// Queue a call; `reply` gets its vectors (or its error) once every batch has run.
    pub fn submit(&self, texts: Vec<String>, reply: Reply) {
        if texts.is_empty() {
            reply.send(Ok(Vec::new()));
            return;
        }
        let call = Arc::new(Call {
            texts,
            plan: OnceLock::new(),
            progress: Mutex::new(Progress {
                reply: Some(reply),
                done: Vec::new(),
                remaining: 0,
            }),
        });
        self.shared.queue().jobs.push_back(Job::Plan(call));
        self.shared.ready.notify_one();
    }
}

impl<W: Work> Drop for Pool<W> {
    fn drop(&mut self) {
        self.shared.queue().closed = true;
        self.shared.ready.notify_all();
        for handle in self.handles.drain(..) {
            // A worker that panicked outside a batch has nothing left to clean up.
            drop(handle.join());
        }
    }
}

fn worker<W: Work>(shared: &Shared<W>, mut state: W::State) {
    loop {
        let job = {
            let mut queue = shared.queue();
            loop {
                if let Some(job) = queue.jobs.pop_front() {
                    break job;
                }
                if queue.closed {
                    return;
                }
                queue = shared
                    .ready
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let call = match &job {
            Job::Plan(call) | Job::Batch(call, _) => Arc::clone(call),
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| run_job(shared, &mut state, job)));
        if let Err(panic) = outcome {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            call.fail(EmbedError::Internal(format!(
                "an embedding thread panicked: {msg}"
            )));
            // The panic may have left the buffers half-written; start afresh.
            match shared.work.spawn_state() {
                Ok(fresh) => state = fresh,
                Err(e) => {
                    tracing::error!(%e, "an embedding thread cannot rebuild its state and stops");
                    return;
                }
            }
        }
    }
}

fn run_job<W: Work>(shared: &Shared<W>, state: &mut W::State, job: Job) {
    let (call, index) = match job {
        Job::Plan(call) => {
            if call.finished_or_abandoned() {
                return;
            }
            let (tokens, batches) = match shared.work.plan(&call.texts) {
                Ok(plan) => plan,
                Err(e) => return call.fail(e),
            };
            let count = batches.len();
            call.progress().remaining = count;
            if call.plan.set(Plan { tokens, batches }).is_err() {
                return call.fail(EmbedError::Internal("a call was planned twice".to_owned()));
            }
            if count == 0 {
                return call.batch_done(Vec::new());
            }
            if count > 1 {
                // In front of later calls, in batch order; this worker keeps batch 0.
                let mut queue = shared.queue();
                for n in (1..count).rev() {
                    queue.jobs.push_front(Job::Batch(Arc::clone(&call), n));
                }
                drop(queue);
                shared.ready.notify_all();
            }
            (call, 0)
        }
        Job::Batch(call, n) => (call, n),
    };
    let Some(plan) = call.plan.get() else {
        return call.fail(EmbedError::Internal(
            "a batch ran before its plan".to_owned(),
        ));
    };
    let Some(batch) = plan.batches.get(index) else {
        return call.fail(EmbedError::Internal(format!("no batch {index}")));
    };
    if call.finished_or_abandoned() {
        return call.batch_done(Vec::new());
    }
    match shared.work.run(state, &plan.tokens, batch) {
        Ok(vectors) if vectors.len() == batch.indices.len() => {
            call.batch_done(batch.indices.iter().copied().zip(vectors).collect());
        }
        Ok(vectors) => call.fail(EmbedError::Internal(format!(
            "a batch of {} texts gave {} vectors",
            batch.indices.len(),
            vectors.len()
        ))),
        Err(e) => {
            call.fail(e);
            call.batch_done(Vec::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A stand-in model: the "vector" of a text is its length; texts starting with "fail" fail,
    /// "panic" panics, and every batch waits on a gate when one is set.
    struct Fake {
        batches_run: AtomicUsize,
        gate: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    }

    impl Work for Fake {
        type State = ();
        fn spawn_state(&self) -> Result<(), EmbedError> {
            Ok(())
        }
        fn plan(&self, texts: &[String]) -> Result<(Vec<Vec<i64>>, Vec<Batch>), EmbedError> {
            let tokens: Vec<Vec<i64>> = texts.iter().map(|t| vec![0; t.len()]).collect();
            // One text per batch, so every call has many batches.
            let batches = (0..texts.len())
                .map(|i| Batch {
                    indices: vec![i],
                    seq_len: tokens[i].len(),
                })
                .collect();
            Ok((tokens, batches))
        }
        fn run(
            &self,
            _: &mut (),
            tokens: &[Vec<i64>],
            batch: &Batch,
        ) -> Result<Vec<Vec<f32>>, EmbedError> {
            if let Some(gate) = &*self.gate.lock().unwrap() {
                gate.recv_timeout(Duration::from_secs(10)).ok();
            }
            self.batches_run.fetch_add(1, Ordering::SeqCst);
            let i = batch.indices[0];
            match tokens[i].len() {
                4 => Err(EmbedError::Internal("fail".to_owned())),
                5 => panic!("boom"),
                n => Ok(vec![vec![n as f32]]),
            }
        }
    }

    fn fake() -> Fake {
        Fake {
            batches_run: AtomicUsize::new(0),
            gate: Mutex::new(None),
        }
    }

    fn blocking<W: Work>(pool: &Pool<W>, texts: &[&str]) -> Vectors {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        pool.submit(
            texts.iter().map(|t| (*t).to_owned()).collect(),
            Reply::Blocking(tx),
        );
        rx.recv().expect("a reply")
    }

    #[test]
    fn vectors_come_back_in_input_order_from_persistent_threads() {
        let pool = Pool::start(fake(), 3).expect("start");
        for _ in 0..20 {
            let v = blocking(&pool, &["a", "bbb", "cc", "dddddd", "", "eeeeeee"]).expect("ok");
            assert_eq!(
                v,
                vec![
                    vec![1.0],
                    vec![3.0],
                    vec![2.0],
                    vec![6.0],
                    vec![0.0],
                    vec![7.0]
                ]
            );
        }
        assert_eq!(pool.threads(), 3);
        assert!(blocking(&pool, &[]).expect("ok").is_empty());
    }

    #[test]
    fn a_failing_batch_fails_the_call_and_the_pool_carries_on() {
        let pool = Pool::start(fake(), 2).expect("start");
        let err = blocking(&pool, &["a", "fail", "bb"]).expect_err("fails");
        assert!(err.to_string().contains("fail"), "{err}");
        let err = blocking(&pool, &["a", "panic", "bb"]).expect_err("panics");
        assert!(err.to_string().contains("panicked: boom"), "{err}");
        // Both workers still serve calls.
        for _ in 0..10 {
            assert_eq!(
                blocking(&pool, &["ab", "c"]).expect("ok"),
                vec![vec![2.0], vec![1.0]]
            );
        }
    }

    #[test]
    fn a_dropped_async_call_is_skipped_and_does_not_wedge_a_worker() {
        let (open, gate) = std::sync::mpsc::channel();
        let work = fake();
        *work.gate.lock().unwrap() = Some(gate);
        let pool = Pool::start(work, 1).expect("start");
        let (tx, rx) = tokio::sync::oneshot::channel();
        pool.submit(
            (0..50).map(|i| "x".repeat(i % 3 + 1)).collect(),
            Reply::Async(tx),
        );
        // The caller goes away while the first batch is still running.
        drop(rx);
        open.send(()).expect("gate");
        *pool.work().gate.lock().unwrap() = None;
        // The next call is answered, and only a batch or two of the abandoned one ran.
        assert_eq!(blocking(&pool, &["abc"]).expect("ok"), vec![vec![3.0]]);
        let ran = pool.work().batches_run.load(Ordering::SeqCst);
        assert!(
            ran <= 3,
            "{ran} batches ran, the abandoned call was not skipped"
        );
    }
}
