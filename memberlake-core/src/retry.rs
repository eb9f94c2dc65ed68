//! Retrying transient failures with exponential backoff and jitter, within a time budget.
//! Used where giving up early costs a lot: a store outage of a few seconds should not cost a
//! worker its range, nor a range its attempts.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::error::Classify;

/// Backoff schedule: `initial`, doubling up to `max`, each delay jittered by ±50 %.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial: Duration::from_millis(100), max: Duration::from_secs(5) }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.initial.saturating_mul(1u32 << attempt.min(16)).min(self.max);
        base.mul_f64(rand::rng().random_range(0.5..1.5))
    }
}

/// At most one retry warning per operation name per second: a worker retries each of its
/// in-flight store writes on its own, and an outage must not print one line per row. Every retry
/// is still counted in `memberlake_retries_total` and logged at debug.
fn warn_now(what: &str) -> bool {
    static LAST_WARNED: Mutex<Option<HashMap<String, Instant>>> = Mutex::new(None);
    let now = Instant::now();
    let mut last = LAST_WARNED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let last = last.get_or_insert_with(HashMap::new);
    match last.get_mut(what) {
        Some(at) if now.duration_since(*at) < Duration::from_secs(1) => false,
        Some(at) => {
            *at = now;
            true
        }
        None => {
            last.insert(what.to_owned(), now);
            true
        }
    }
}

/// Runs `op` until it succeeds, `retryable` says an error is final, or `budget` is spent; then
/// returns the last error. Logs each retry with `what`. For an error type that implements
/// [`Classify`], [`retry_transient`] (or `Classify::is_transient` as `retryable`) is the usual
/// predicate.
pub async fn retry<T, E, F, Fut>(
    what: &str,
    budget: Duration,
    backoff: Backoff,
    retryable: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let delay = backoff.delay(attempt);
                if !retryable(&e) || started.elapsed() + delay > budget {
                    return Err(e);
                }
                let retry_in_ms = delay.as_millis() as u64;
                if warn_now(what) {
                    tracing::warn!(error = %e, attempt, retry_in_ms, "{what} failed; retrying");
                } else {
                    tracing::debug!(error = %e, attempt, retry_in_ms, "{what} failed; retrying");
                }
                metrics::counter!("memberlake_retries_total", "what" => what.to_owned()).increment(1);
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

/// [`retry`] with [`Classify::is_transient`] as the predicate: retries exactly the errors that
/// say the same call could succeed later, and returns a permanent one at once.
pub async fn retry_transient<T, E, F, Fut>(what: &str, budget: Duration, backoff: Backoff, op: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Classify + std::fmt::Display,
{
    retry(what, budget, backoff, E::is_transient, op).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn retries_until_success_within_budget() {
        let calls = AtomicU32::new(0);
        let fast = Backoff { initial: Duration::from_millis(1), max: Duration::from_millis(2) };
        let r: Result<u32, String> = retry(
            "op",
            Duration::from_secs(5),
            fast,
            |_| true,
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n < 3 {
                    Err(format!("fail {n}"))
                } else {
                    Ok(n)
                }
            },
        )
        .await;
        assert_eq!(r, Ok(3));
    }

    #[tokio::test]
    async fn stops_on_final_errors_and_when_the_budget_is_spent() {
        let fast = Backoff { initial: Duration::from_millis(1), max: Duration::from_millis(2) };
        let calls = AtomicU32::new(0);
        let r: Result<(), String> = retry(
            "op",
            Duration::from_secs(5),
            fast,
            |_| false,
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err("final".to_owned())
            },
        )
        .await;
        assert_eq!((r, calls.load(Ordering::SeqCst)), (Err("final".to_owned()), 1));
        let slow = Backoff { initial: Duration::from_millis(30), max: Duration::from_millis(30) };
        let started = Instant::now();
        let r: Result<(), String> =
            retry("op", Duration::from_millis(100), slow, |_| true, || async { Err("down".to_owned()) }).await;
        assert!(r.is_err());
        assert!(started.elapsed() < Duration::from_millis(200));
    }

    #[derive(Debug, PartialEq)]
    struct Failure(ErrorClass);

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?} failure", self.0)
        }
    }

    impl Classify for Failure {
        fn class(&self) -> ErrorClass {
            self.0
        }
    }

    #[tokio::test]
    async fn retry_transient_retries_transient_errors_and_returns_a_permanent_one_at_once() {
        let fast = Backoff { initial: Duration::from_millis(1), max: Duration::from_millis(2) };
        let calls = AtomicU32::new(0);
        // Two transient failures, then a permanent one: three calls, the permanent error back.
        let r: Result<(), Failure> = retry_transient("op", Duration::from_secs(5), fast, || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            Err(Failure(if n < 2 { ErrorClass::Transient } else { ErrorClass::Permanent }))
        })
        .await;
        assert_eq!((r, calls.load(Ordering::SeqCst)), (Err(Failure(ErrorClass::Permanent)), 3));
        // Transient failures then success.
        calls.store(0, Ordering::SeqCst);
        let r: Result<u32, Failure> = retry_transient("op", Duration::from_secs(5), fast, || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n < 2 {
                Err(Failure(ErrorClass::Transient))
            } else {
                Ok(n)
            }
        })
        .await;
        assert_eq!(r, Ok(2));
        // The same predicate passed to `retry` directly.
        calls.store(0, Ordering::SeqCst);
        let r: Result<(), Failure> = retry("op", Duration::from_secs(5), fast, Failure::is_transient, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Failure(ErrorClass::Permanent))
        })
        .await;
        assert_eq!((r, calls.load(Ordering::SeqCst)), (Err(Failure(ErrorClass::Permanent)), 1));
    }

    #[test]
    fn retry_warnings_are_limited_to_one_per_second_per_operation() {
        assert!(warn_now("rate-limit-test-a"));
        assert!(!warn_now("rate-limit-test-a"), "a second warning within the second is demoted");
        assert!(warn_now("rate-limit-test-b"), "another operation has its own budget");
    }
}
