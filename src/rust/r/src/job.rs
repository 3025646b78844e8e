//! Background jobs: the one tokio runtime, and handles R polls for progress.
//!
//! Every Azure call runs as a task on the runtime. R holds a `Job` and calls
//! `job_poll()` in a loop: each poll blocks at most a few hundred milliseconds, so R
//! gets control back often enough to draw the progress bar and to notice Ctrl-C (it
//! then calls `job_cancel()`). Nothing here calls into R from a worker thread.

use serde_json::Value;
use serverless_core::{Error, Progress};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

pub fn runtime() -> std::result::Result<&'static Runtime, Error> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .thread_name("serverless-worker")
                .on_thread_start(block_sigpipe)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::internal(format!("cannot start the async runtime: {e}")))
}

/// R handles SIGPIPE by raising an R error, a longjmp onto R's stack. A vectored
/// write (`writev`) to a closed socket raises SIGPIPE in the writing thread, so in a
/// runtime thread it would run R's handler there and corrupt both stacks. Blocked in
/// these threads, the write fails with `EPIPE` instead, as it does in Rust programs
/// (which ignore SIGPIPE). Child processes start with an empty signal mask.
fn block_sigpipe() {
    #[cfg(unix)]
    // SAFETY: plain libc calls on a local, initialised signal set; only this
    // thread's mask changes.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

type JobResult = std::result::Result<Value, Error>;

pub struct Job {
    progress: Arc<Progress>,
    abort: Option<AbortHandle>,
    receiver: Mutex<Option<oneshot::Receiver<JobResult>>>,
    /// Set once the result has been handed to R.
    finished: Mutex<Option<JobResult>>,
}

/// What one poll saw.
pub enum Poll {
    Running,
    Done(JobResult),
}

impl Job {
    /// Start `work` on the runtime. The closure gets the job's progress handle.
    pub fn spawn<F, Fut>(work: F) -> Job
    where
        F: FnOnce(Arc<Progress>) -> Fut,
        Fut: Future<Output = JobResult> + Send + 'static,
    {
        let progress = Arc::new(Progress::new());
        let fut = Box::pin(work(progress.clone()));
        Job::start(progress, fut)
    }

    /// Not generic: every job is one boxed future type, so the runtime's task code is
    /// compiled once rather than once per job (install time, bench/RESULTS.md).
    fn start(
        progress: Arc<Progress>,
        work: Pin<Box<dyn Future<Output = JobResult> + Send>>,
    ) -> Job {
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(e) => return Job::done(Err(e)),
        };
        let (tx, rx) = oneshot::channel();
        let handle = rt.spawn(async move {
            let _ = tx.send(work.await);
        });
        Job {
            progress,
            abort: Some(handle.abort_handle()),
            receiver: Mutex::new(Some(rx)),
            finished: Mutex::new(None),
        }
    }

    /// A job that already has its result (e.g. an input error found up front).
    pub fn done(result: JobResult) -> Job {
        Job {
            progress: Arc::new(Progress::new()),
            abort: None,
            receiver: Mutex::new(None),
            finished: Mutex::new(Some(result)),
        }
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Wait up to `wait` for the result.
    pub fn poll(&self, wait: Duration) -> Poll {
        if let Some(result) = self
            .finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Poll::Done(result);
        }
        let mut guard = self.receiver.lock().unwrap_or_else(|e| e.into_inner());
        let Some(rx) = guard.as_mut() else {
            return Poll::Done(Err(Error::internal("job has no result")));
        };
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(e) => return Poll::Done(Err(e)),
        };
        let outcome = rt.block_on(async { tokio::time::timeout(wait, rx).await });
        let result = match outcome {
            Err(_elapsed) => return Poll::Running,
            Ok(Ok(result)) => result,
            // The task ended without sending: it was aborted or it panicked.
            Ok(Err(_closed)) => Err(Error::new(
                serverless_core::ErrorKind::Internal,
                "the operation stopped unexpectedly (this is a bug in serveRless; please report it)",
            )),
        };
        *guard = None;
        *self.finished.lock().unwrap_or_else(|e| e.into_inner()) = Some(result.clone());
        Poll::Done(result)
    }

    /// Stop the work. Uploads commit last, so a cancelled one leaves nothing that looks
    /// complete; its staged blocks let a re-run resume.
    pub fn cancel(&self) {
        if let Some(abort) = &self.abort {
            abort.abort();
        }
        let mut finished = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        if finished.is_none() {
            *finished = Some(Err(Error::new(
                serverless_core::ErrorKind::Interrupted,
                "cancelled by the user",
            )));
        }
    }
}

impl Drop for Job {
    // A job R forgot about (garbage-collected handle) must not run on.
    fn drop(&mut self) {
        if let Some(abort) = &self.abort {
            abort.abort();
        }
    }
}
