//! Progress of long work, shared between the task doing it and the R main thread that
//! draws the progress bar. Plain atomics: the worker never waits for the reader.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
    status: Mutex<String>,
    /// Messages for the user (e.g. a device-code prompt), shown once each.
    notices: Arc<Mutex<Vec<String>>>,
    /// Steps of multi-step work ("creating registry ..."), shown once each.
    steps: Mutex<Vec<String>>,
    /// Lines of a remote log being streamed (e.g. an image build), shown verbatim.
    log: Mutex<Vec<String>>,
}

/// A consistent-enough snapshot for one progress-bar update.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressSnapshot {
    pub done: u64,
    pub total: u64,
    pub status: String,
}

impl Progress {
    pub fn new() -> Self {
        Self::default()
    }

    /// Start a new phase: what is happening and how many units (bytes) it has.
    pub fn begin(&self, status: impl Into<String>, total: u64) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = status.into();
        self.total.store(total, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
    }

    pub fn advance(&self, units: u64) {
        self.done.fetch_add(units, Ordering::Relaxed);
    }

    /// The queue a credential writes its prompts to.
    pub fn notices(&self) -> Arc<Mutex<Vec<String>>> {
        self.notices.clone()
    }

    /// Messages not shown yet.
    pub fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut *self.notices.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Announce one step of multi-step work.
    pub fn step(&self, text: impl Into<String>) {
        self.steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(text.into());
    }

    /// Steps not shown yet.
    pub fn take_steps(&self) -> Vec<String> {
        std::mem::take(&mut *self.steps.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Append lines of a streamed log.
    pub fn log_lines(&self, lines: impl IntoIterator<Item = String>) {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(lines);
    }

    /// Log lines not shown yet.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            done: self.done.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            status: self
                .status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}
