//! Refusal lines, rationed. A flood of refused requests (a scanner, a misconfigured callback
//! URL) would write a line or two per request; instead at most [`LINES_PER_WINDOW`] refusals
//! per [`WINDOW`] and process get their lines (`callback rejected`, and for a wrong signature
//! `signature does not match; ...` before it). The others are counted, and the next
//! `callback rejected` line written says how many were left out (`suppressed`). Metrics are
//! not rationed: `SignatureRejections` counts every refusal.
//!
//! All of a request's refusal lines share one admission ([`request`]): a refusal is logged
//! whole or not at all, so lines written plus the `suppressed` counts add up to the refusals.

use std::cell::Cell;
use std::future::Future;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Refusals whose lines are written per window.
pub const LINES_PER_WINDOW: u32 = 5;
/// The window: a second of the process's life.
pub const WINDOW: Duration = Duration::from_secs(1);

static REFUSALS: Limiter = Limiter::new(LINES_PER_WINDOW, WINDOW);
static START: LazyLock<Instant> = LazyLock::new(Instant::now);

tokio::task_local! {
    /// Whether the request being handled has its refusal lines written, once asked.
    static ADMISSION: Cell<Option<bool>>;
}

/// Handles one request: all its refusal lines are written, or none.
pub async fn request<F: Future>(handling: F) -> F::Output {
    LazyLock::force(&START);
    ADMISSION.scope(Cell::new(None), handling).await
}

/// Whether the calling request's refusal lines are written: its first line asks the limiter,
/// its later lines follow the answer. Outside [`request`], each line asks.
pub fn admitted() -> bool {
    let ask = || REFUSALS.admit_at(START.elapsed());
    ADMISSION
        .try_with(|admission| {
            let admitted = admission.get().unwrap_or_else(ask);
            admission.set(Some(admitted));
            admitted
        })
        .unwrap_or_else(|_| ask())
}

/// For a request's last refusal line (`callback rejected`): `None` when it is not written;
/// otherwise how many refusals had their lines suppressed since the last such line.
pub fn closing() -> Option<u64> {
    admitted().then(|| REFUSALS.take_suppressed())
}

/// At most `per_window` admissions per window of the clock, lock-free: the window's number
/// and the admissions in it share one atomic word (one compare-and-swap per admission, a load
/// and an add per suppression).
pub struct Limiter {
    per_window: u64,
    window: Duration,
    /// The window's number (high 32 bits) and its admissions (low 32 bits).
    state: AtomicU64,
    /// Suppressed since the last [`Limiter::take_suppressed`].
    suppressed: AtomicU64,
}

const COUNT: u64 = 0xFFFF_FFFF;

impl Limiter {
    pub const fn new(per_window: u32, window: Duration) -> Limiter {
        Limiter {
            per_window: per_window as u64,
            window,
            state: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Admits one more at `elapsed` (the clock's reading: time since it started), or counts
    /// it suppressed. A reading older than the newest window seen counts in that window.
    pub fn admit_at(&self, elapsed: Duration) -> bool {
        let window = elapsed.as_nanos() / self.window.as_nanos().max(1);
        let window = u64::try_from(window).unwrap_or(u64::MAX) & COUNT;
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let (current, admitted) = (state >> 32, state & COUNT);
            let next = if window > current {
                (window << 32) | 1
            } else if admitted < self.per_window {
                state + 1
            } else {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                return false;
            };
            match self.state.compare_exchange_weak(
                state,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => state = actual,
            }
        }
    }

    /// How many were suppressed since the last call.
    pub fn take_suppressed(&self) -> u64 {
        self.suppressed.swap(0, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn five_per_second_and_the_rest_counted() {
        let limiter = Limiter::new(5, WINDOW);
        let admitted: Vec<bool> = (0..8).map(|i| limiter.admit_at(at(i * 100))).collect();
        assert_eq!(
            admitted,
            [true, true, true, true, true, false, false, false]
        );
        assert_eq!(limiter.take_suppressed(), 3);
        assert_eq!(limiter.take_suppressed(), 0);
        // The next second: five more.
        let admitted = (0..7).filter(|_| limiter.admit_at(at(1_000))).count();
        assert_eq!(admitted, 5);
        assert_eq!(limiter.take_suppressed(), 2);
        // A quiet stretch, then a second far later.
        assert!(limiter.admit_at(at(3_600_000)));
    }

    #[test]
    fn a_late_reading_counts_in_the_newest_window() {
        let limiter = Limiter::new(2, WINDOW);
        assert!(limiter.admit_at(at(2_100)));
        // Read before the line above was admitted, but asked after: window 2 still.
        assert!(limiter.admit_at(at(1_900)));
        assert!(!limiter.admit_at(at(1_950)));
        assert!(!limiter.admit_at(at(2_999)));
        assert!(limiter.admit_at(at(3_000)));
        assert_eq!(limiter.take_suppressed(), 2);
    }

    #[test]
    fn threads_at_once_get_no_more_than_the_window_allows() {
        let limiter = Limiter::new(5, WINDOW);
        let (threads, each, windows): (u64, u64, u64) = (4, 250, 10);
        let admitted: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let limiter = &limiter;
                    scope.spawn(move || {
                        (0..each)
                            .filter(|i| limiter.admit_at(at(i * windows * 1_000 / each)))
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        let suppressed = limiter.take_suppressed();
        assert_eq!(admitted as u64 + suppressed, threads * each);
        assert!(
            (5..=5 * windows as usize).contains(&admitted),
            "{admitted} admitted in {windows} windows"
        );
    }

    #[test]
    fn a_request_is_logged_whole_or_not_at_all() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let outcomes: Vec<(bool, Option<u64>)> = (0..20)
            .map(|_| runtime.block_on(request(async { (admitted(), closing()) })))
            .collect();
        for (first, last) in &outcomes {
            assert_eq!(*first, last.is_some(), "{outcomes:?}");
        }
    }
}
