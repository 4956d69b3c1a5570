//! A call to Redis that runs to its end whatever its caller does.
//!
//! A call of several dependent round trips must make all of them, or undo
//! what it made, even when its request is dropped halfway (its client hung
//! up); a signal that Redis may have taken must wake its readers. A task of
//! its own for every call did that, and cost a signal its spawn, a second
//! task's turn and the wake-up of the first (bench/HISTORY.md, round 18).
//! So the call runs on the caller's task while the caller waits for it,
//! and only a call its caller stopped waiting for moves to a task of its
//! own.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::FutureExt;
use futures_util::future::CatchUnwind;
use tracing::error;

use crate::domain::Refusal;

type Call<F> = Pin<Box<CatchUnwind<AssertUnwindSafe<F>>>>;

/// `call`, polled by its caller, finished by a task of its own if the
/// caller drops it first. A panic in it is the caller's `Internal`, as it
/// was a task's.
pub(super) struct Finish<T, F>
where
    T: Send + 'static,
    F: Future<Output = Result<T, Refusal>> + Send + 'static,
{
    // Boxed, so that a dropped caller can hand it on where it is: a future
    // that was polled cannot move.
    call: Option<Call<F>>,
}

impl<T, F> Finish<T, F>
where
    T: Send + 'static,
    F: Future<Output = Result<T, Refusal>> + Send + 'static,
{
    pub(super) fn new(call: F) -> Self {
        Self {
            call: Some(Box::pin(AssertUnwindSafe(call).catch_unwind())),
        }
    }
}

impl<T, F> Future for Finish<T, F>
where
    T: Send + 'static,
    F: Future<Output = Result<T, Refusal>> + Send + 'static,
{
    type Output = Result<T, Refusal>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(call) = this.call.as_mut() else {
            // Polled again after its end: a caller's mistake, not Redis's.
            return Poll::Ready(Err(Refusal::Internal));
        };
        let outcome = ready!(call.as_mut().poll(cx));
        this.call = None;
        Poll::Ready(outcome.unwrap_or_else(|cause| {
            error!(cause = panic_text(&*cause), "a redis call panicked");
            Err(Refusal::Internal)
        }))
    }
}

impl<T, F> Drop for Finish<T, F>
where
    T: Send + 'static,
    F: Future<Output = Result<T, Refusal>> + Send + 'static,
{
    fn drop(&mut self) {
        if let Some(call) = self.call.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(cause) = call.await {
                    error!(cause = panic_text(&*cause), "a redis call panicked");
                }
            });
        }
    }
}

fn panic_text(cause: &(dyn Any + Send)) -> &str {
    cause
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| cause.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::sync::oneshot;

    use super::*;

    #[tokio::test]
    async fn a_call_its_caller_waits_for_answers_the_caller() {
        let answer = Finish::new(async { Ok::<_, Refusal>(7) }).await;
        assert_eq!(answer.ok(), Some(7));
    }

    #[tokio::test]
    async fn a_call_its_caller_dropped_halfway_still_runs_to_its_end() {
        let (go, gate) = oneshot::channel::<()>();
        let (done, finished) = oneshot::channel::<()>();
        let reached = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&reached);
        let mut call = Box::pin(Finish::new(async move {
            let _ = gate.await;
            seen.store(true, Ordering::Release);
            let _ = done.send(());
            Ok::<_, Refusal>(())
        }));
        // Started on the caller's task, then dropped while it waits.
        assert!(futures_util::poll!(call.as_mut()).is_pending());
        drop(call);
        let _ = go.send(());
        tokio::time::timeout(std::time::Duration::from_secs(5), finished)
            .await
            .expect("the call finished within the deadline")
            .expect("the call sent its end");
        assert!(reached.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn a_panic_in_a_call_is_an_internal_refusal() {
        let answer = Finish::new(async {
            if true {
                panic!("boom");
            }
            Ok::<(), Refusal>(())
        })
        .await;
        assert!(matches!(answer, Err(Refusal::Internal)));
    }
}
