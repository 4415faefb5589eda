//! Refusal lines, rationed, metric lines included. A flood of refused requests (a scanner, a
//! misconfigured callback URL) would write a few lines per request; instead at most
//! [`LINES_PER_WINDOW`] admissions per [`WINDOW`] and process get lines. A refused request
//! that is admitted writes its lines (`callback rejected`, and for a wrong signature
//! `signature does not match; ...` before it); the others are counted, and the next
//! `callback rejected` line written says how many were left out (`suppressed`).
//!
//! `SignatureRejections` counts every refusal, but not a line each: refusals are counted in
//! memory ([`metrics::signature_rejected`]) and, at the end of a request, every count not yet
//! written goes out (a line per cause, its value the count) when the request was admitted,
//! or else when the ration has room for one more admission. So a later request, refused or
//! not, writes what a burst left, and what is not yet written is at most the refusals of the
//! last window that had any. `serve` writes the rest as it stops ([`write_pending`]).
//!
//! All of a request's refusal lines share one admission ([`request`]): a refusal is logged
//! whole or not at all, so lines written plus the `suppressed` counts add up to the refusals.

use std::cell::Cell;
use std::future::Future;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use crate::metrics;

/// Admissions per window: refused requests whose lines are written, or writes of the counts.
pub const LINES_PER_WINDOW: u32 = 5;
/// The window: a second of the process's life.
pub const WINDOW: Duration = Duration::from_secs(1);

static REFUSALS: Limiter = Limiter::new(LINES_PER_WINDOW, WINDOW);
static START: LazyLock<Instant> = LazyLock::new(Instant::now);

tokio::task_local! {
    /// Whether the request being handled has its refusal lines written, once asked.
    static ADMISSION: Cell<Option<bool>>;
}

/// Handles one request: all its refusal lines are written, or none; then the refusal counts
/// not yet written, if the ration allows ([`write_counts`]).
///
/// Not an `async fn`, nor an `async` block: either would hold `handling` twice (as its
/// argument or capture, and again as the future it awaits), and a request's future is moved
/// whole at every layer (BENCHMARKS.md, bench (c)).
pub fn request<F: Future>(handling: F) -> impl Future<Output = F::Output> {
    LazyLock::force(&START);
    ADMISSION.scope(Cell::new(None), handling.inspect(|_| write_counts()))
}

/// Writes the refusal counts not yet written, if any: with the calling request's own refusal
/// lines when they were written, else when the window has room for one more admission (which
/// it takes). A request whose refusal lines were left out is not counted `suppressed` again.
fn write_counts() {
    if !metrics::signature_rejections_pending() {
        return;
    }
    let admitted = ADMISSION.try_with(Cell::get).ok().flatten() == Some(true);
    if admitted || REFUSALS.try_admit_at(START.elapsed()) {
        metrics::write_signature_rejections();
    }
}

/// Writes every refusal count not yet written, whatever the ration: for a process that stops.
pub fn write_pending() {
    metrics::write_signature_rejections();
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
        let admitted = self.try_admit_at(elapsed);
        if !admitted {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// Admits one more at `elapsed` when the window has room; when it has none, nothing is
    /// counted suppressed.
    pub fn try_admit_at(&self, elapsed: Duration) -> bool {
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

    /// The tests that use the process's ration and counts, one at a time.
    fn serial() -> std::sync::MutexGuard<'static, ()> {
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        SERIAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[test]
    fn what_is_not_admitted_by_a_try_is_not_suppressed() {
        let limiter = Limiter::new(1, WINDOW);
        assert!(limiter.try_admit_at(at(0)));
        assert!(!limiter.try_admit_at(at(10)));
        assert!(!limiter.admit_at(at(20)));
        assert_eq!(limiter.take_suppressed(), 1);
        assert!(limiter.try_admit_at(at(1_000)));
    }

    #[test]
    fn a_flood_of_refusals_writes_a_few_lines_and_counts_every_one() {
        let _serial = serial();
        let buffer = crate::logging::Captured::default();
        crate::logging::capture_on_this_thread(std::sync::Arc::clone(&buffer));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let refusals = 1_500u64;
        let began = Instant::now();
        for n in 0..refusals {
            runtime.block_on(request(async {
                // As the handler does: the refusal's line when admitted, then its count.
                if let Some(suppressed) = closing() {
                    let line =
                        format!(r#"{{"message":"callback rejected","suppressed":{suppressed}}}"#);
                    crate::logging::write_line(format!("{line}\n").as_bytes());
                }
                let cause = if n % 3 == 0 { "missing" } else { "invalid" };
                metrics::signature_rejected(cause);
            }));
        }
        let windows = began.elapsed().as_secs() / WINDOW.as_secs() + 2;
        write_pending();
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let counted = |cause: &str| -> u64 {
            lines
                .iter()
                .filter(|line| line["Cause"] == cause)
                .filter_map(|line| line["SignatureRejections"].as_u64())
                .sum()
        };
        assert_eq!(counted("missing"), refusals.div_ceil(3), "{text}");
        assert_eq!(counted("invalid"), refusals - refusals.div_ceil(3));
        // Each admission: its refusal line and a line per cause pending; the rest at the end.
        let causes = 2;
        let bound = windows * u64::from(LINES_PER_WINDOW) * (1 + causes) + causes;
        assert!(
            (lines.len() as u64) <= bound,
            "{} lines for {refusals} refusals; at most {bound}",
            lines.len()
        );
    }

    #[test]
    fn a_request_is_logged_whole_or_not_at_all() {
        let _serial = serial();
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
