//! A document fetched from a remote store and served from memory: refreshed at most once per
//! TTL, one fetch at a time, and never replaced by a failed fetch or a rejected document.
//! A cache with nothing good to serve may fall back to the newest older version that is
//! valid, so a process started after a bad publish is no worse off than one already running.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// What a store returned: the document's text and the store's version of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub text: String,
    pub version: Option<i64>,
}

/// One remote document, e.g. an SSM parameter.
pub trait Fetch: Send + Sync + 'static {
    /// Why a fetch failed: its `Display` is one line, safe to log (never the document).
    type Error: std::error::Error + Send + Sync + 'static;
    fn fetch(&self) -> impl Future<Output = Result<Fetched, Self::Error>> + Send;
    /// The document's name, for logs.
    fn name(&self) -> &str;
    /// Every version the store still holds, in any order: read only by a cache that has
    /// nothing good to serve and finds the current version rejected. A store without history
    /// has none.
    fn history(&self) -> impl Future<Output = Result<Vec<Fetched>, Self::Error>> + Send {
        std::future::ready(Ok(Vec::new()))
    }
}

/// The time, behind a trait so tests can move it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Why a fetch gave no document: the store's error, or no answer in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError<E> {
    #[error(transparent)]
    Store(E),
    /// The fetch outlived [`FETCH_DEADLINE`].
    #[error("no answer within {} ms", FETCH_DEADLINE.as_millis())]
    Deadline,
}

/// Why a fetched document was rejected (a `RulesError`, a `TokensError`), by its `Display`.
pub type Rejected = Box<dyn std::error::Error + Send + Sync>;

/// Turns a fetched document into its in-memory form, or says why it is rejected.
pub type Parse<T> = fn(&str, Option<i64>) -> Result<T, Rejected>;

/// Why a refresh left the document in force as it was.
#[derive(Debug, thiserror::Error)]
enum RefreshFailed<E: std::error::Error> {
    #[error(transparent)]
    Fetch(FetchError<E>),
    #[error("document rejected: {0}")]
    Rejected(Rejected),
}

/// The first retry after a failure waits this long; each further failure doubles it, up to
/// [`MAX_BACKOFF`] or the TTL, whichever is shorter.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A fetch that has not finished by then counts as failed, whatever the client's own
/// timeouts say.
pub const FETCH_DEADLINE: Duration = Duration::from_millis(2500);
/// Reading older versions (every page) gives up after this, and in any case once the refresh
/// that needs them has taken [`FALLBACK_DEADLINE`] in all: callers are waiting, with nothing
/// else to serve, and the decision has 4 s.
pub const HISTORY_DEADLINE: Duration = Duration::from_millis(2300);
pub const FALLBACK_DEADLINE: Duration = Duration::from_millis(3500);

/// What a cache that falls back to older versions does besides: reports how many versions
/// the one in force is behind the store's current one (0 when current), after each refresh
/// that read the current version.
pub type ReportBehind = fn(i64);

pub struct Cached<T, F, C = SystemClock> {
    fetcher: F,
    parse: Parse<T>,
    /// What the document is, for logs: "rules", "auth tokens".
    what: &'static str,
    ttl: Duration,
    clock: C,
    /// Set for a document that may fall back to an older version (the rules).
    fall_back: Option<ReportBehind>,
    state: Mutex<State<T>>,
    /// Held while a fetch is under way, so there is one at a time.
    refreshing: tokio::sync::Mutex<()>,
}

struct State<T> {
    good: Option<Arc<T>>,
    version: Option<i64>,
    /// When the next fetch is due; `None` before the first one.
    due: Option<Instant>,
    /// When the document in force was last fetched successfully.
    fetched_at: Option<Instant>,
    failures: u32,
}

impl<T: Send + Sync + 'static, F: Fetch, C: Clock> Cached<T, F, C> {
    pub fn new(fetcher: F, parse: Parse<T>, what: &'static str, ttl: Duration, clock: C) -> Self {
        Cached {
            fetcher,
            parse,
            what,
            ttl,
            clock,
            fall_back: None,
            state: Mutex::new(State {
                good: None,
                version: None,
                due: None,
                fetched_at: None,
                failures: 0,
            }),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// With nothing good in memory and the current version rejected, use the newest older
    /// version the store holds that is valid, and report how far behind it is.
    pub fn falling_back(mut self, report: ReportBehind) -> Self {
        self.fall_back = Some(report);
        self
    }

    pub fn name(&self) -> &str {
        self.fetcher.name()
    }

    /// The last good document, refreshed first when it is due. While one caller refreshes,
    /// the others are served the last good document at once; with none yet, they wait for
    /// that one fetch.
    pub async fn current(&self) -> Option<Arc<T>> {
        let good = {
            let state = self.state();
            if !state.is_due(self.clock.now()) {
                return state.good.clone();
            }
            state.good.clone()
        };
        let _guard = match (&good, self.refreshing.try_lock()) {
            (_, Ok(guard)) => guard,
            (Some(_), Err(_)) => return good,
            (None, Err(_)) => self.refreshing.lock().await,
        };
        // Another caller may have refreshed while this one waited.
        if self.state().is_due(self.clock.now()) {
            // Boxed: the fetch's future is kilobytes, and without the box every caller's
            // future carries it, due or not.
            Box::pin(self.refresh()).await;
        }
        self.state().good.clone()
    }

    /// Fetches now, whatever the TTL says (at start). Callers hold `refreshing` or are alone.
    pub async fn refresh(&self) {
        let started = self.clock.now();
        let fetched = match tokio::time::timeout(FETCH_DEADLINE, self.fetcher.fetch()).await {
            Ok(result) => result.map_err(FetchError::Store),
            Err(_) => Err(FetchError::Deadline),
        };
        self.settle(fetched, started).await;
    }

    /// Takes the outcome of a fetch made elsewhere (start-up reads several documents in one
    /// call), begun at `started`, exactly as [`Cached::refresh`] takes its own: parsed, kept
    /// or rejected (then perhaps an older version read), and the next fetch scheduled.
    /// Callers hold `refreshing` or are alone.
    pub async fn settle(&self, fetched: Result<Fetched, FetchError<F::Error>>, started: Instant) {
        let current_version = fetched.as_ref().ok().and_then(|fetched| fetched.version);
        let parsed = fetched.map_err(RefreshFailed::Fetch).and_then(|fetched| {
            (self.parse)(&fetched.text, fetched.version)
                .map(|value| (value, fetched.version))
                .map_err(RefreshFailed::Rejected)
        });
        let outcome = match (parsed, current_version) {
            (Ok((value, version)), _) => Outcome::Current(value, version),
            (Err(RefreshFailed::Rejected(cause)), Some(rejected)) if self.needs_fallback() => {
                self.fall_back(rejected, cause, started).await
            }
            (Err(failed), _) => Outcome::Failed(failed, None),
        };
        let in_use = self.apply(outcome);
        if let (Some(report), Some(current), Some(in_use)) =
            (self.fall_back, current_version, in_use)
        {
            report(current.saturating_sub(in_use).max(0));
        }
    }

    /// Whether a rejected current version sends this cache to the store's history: only
    /// when it may fall back and has nothing good to serve.
    fn needs_fallback(&self) -> bool {
        self.fall_back.is_some() && self.state().good.is_none()
    }

    /// The newest version below `rejected` that parses, read from the store's history within
    /// what is left of the refresh's time.
    async fn fall_back(
        &self,
        rejected: i64,
        cause: Rejected,
        started: Instant,
    ) -> Outcome<T, F::Error> {
        let spent = self.clock.now().saturating_duration_since(started);
        let left = HISTORY_DEADLINE.min(FALLBACK_DEADLINE.saturating_sub(spent));
        let history = match tokio::time::timeout(left, self.fetcher.history()).await {
            Ok(Ok(versions)) => versions,
            Ok(Err(error)) => {
                let note = format!("older versions unreadable: {error}");
                return Outcome::Failed(RefreshFailed::Rejected(cause), Some(note));
            }
            Err(_) => {
                let note = format!("older versions unread within {} ms", left.as_millis());
                return Outcome::Failed(RefreshFailed::Rejected(cause), Some(note));
            }
        };
        let read = history.len();
        match newest_valid_below(history, rejected, self.parse) {
            Some((value, version)) => Outcome::Older {
                value,
                version,
                rejected,
                cause,
            },
            None => {
                let note = format!("no older version is valid ({read} read)");
                Outcome::Failed(RefreshFailed::Rejected(cause), Some(note))
            }
        }
    }

    /// Puts a refresh's outcome in force, logs it and schedules the next fetch; returns the
    /// version then in force.
    fn apply(&self, outcome: Outcome<T, F::Error>) -> Option<i64> {
        let now = self.clock.now();
        let mut state = self.state();
        match outcome {
            Outcome::Current(value, version) => {
                if state.good.is_none() || state.version != version {
                    tracing::info!(
                        parameter = self.fetcher.name(),
                        version,
                        previous_version = state.version,
                        "{} loaded",
                        self.what
                    );
                }
                state.serve(value, version, now + self.ttl, now);
            }
            Outcome::Older {
                value,
                version,
                rejected,
                cause,
            } => {
                crate::metrics::refresh_failed(self.what);
                tracing::warn!(
                    parameter = self.fetcher.name(),
                    rejected_version = rejected,
                    version,
                    cause = %cause,
                    "{} version rejected; using an older version",
                    self.what
                );
                // The current version is tried again after the TTL, as a warm process would.
                state.serve(value, Some(version), now + self.ttl, now);
            }
            Outcome::Failed(cause, history) => {
                state.failures = state.failures.saturating_add(1);
                let wait = backoff(state.failures, self.ttl);
                state.due = Some(now + wait);
                crate::metrics::refresh_failed(self.what);
                tracing::warn!(
                    parameter = self.fetcher.name(),
                    cause = %cause,
                    history,
                    in_use_version = state.version,
                    no_good_document = state.good.is_none(),
                    retry_in_ms = wait.as_millis() as u64,
                    "{} refresh failed; keeping the last good document",
                    self.what
                );
            }
        }
        state.version
    }

    /// How long ago the document in force was fetched.
    pub fn age(&self) -> Option<Duration> {
        let fetched_at = self.state().fetched_at?;
        Some(self.clock.now().saturating_duration_since(fetched_at))
    }

    /// The version in force, if any.
    pub fn version(&self) -> Option<i64> {
        self.state().version
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        // The lock guards plain data with no invariant a panic could break.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> State<T> {
    fn is_due(&self, now: Instant) -> bool {
        self.due.is_none_or(|due| now >= due)
    }

    fn serve(&mut self, value: T, version: Option<i64>, due: Instant, now: Instant) {
        self.good = Some(Arc::new(value));
        self.version = version;
        self.failures = 0;
        self.due = Some(due);
        self.fetched_at = Some(now);
    }
}

/// What one refresh came to.
enum Outcome<T, E: std::error::Error> {
    /// The current version, valid.
    Current(T, Option<i64>),
    /// The current version rejected, and an older one valid.
    Older {
        value: T,
        version: i64,
        rejected: i64,
        cause: Rejected,
    },
    /// Nothing new to serve: why, and what the history said when it was read.
    Failed(RefreshFailed<E>, Option<String>),
}

/// The newest of `versions` below `rejected` that `parse` accepts. The store's order is not
/// trusted: all are sorted first.
fn newest_valid_below<T>(
    mut versions: Vec<Fetched>,
    rejected: i64,
    parse: Parse<T>,
) -> Option<(T, i64)> {
    versions.retain(|fetched| fetched.version.is_some_and(|version| version < rejected));
    versions.sort_by_key(|fetched| std::cmp::Reverse(fetched.version));
    versions.iter().find_map(|fetched| {
        let version = fetched.version?;
        let value = parse(&fetched.text, Some(version)).ok()?;
        Some((value, version))
    })
}

fn backoff(failures: u32, ttl: Duration) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1 << failures.saturating_sub(1).min(16));
    doubled.min(MAX_BACKOFF).min(ttl.max(FIRST_BACKOFF))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A clock the test moves by hand.
    #[derive(Clone)]
    struct ManualClock(Arc<Mutex<Instant>>);

    impl ManualClock {
        fn new() -> Self {
            ManualClock(Arc::new(Mutex::new(Instant::now())))
        }
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    /// A store whose answer the test sets, counting fetches; a fetch can be made to wait.
    #[derive(Clone)]
    struct Store {
        answer: Arc<Mutex<Result<Fetched, StoreDown>>>,
        history: Arc<Mutex<Result<Vec<Fetched>, StoreDown>>>,
        history_reads: Arc<AtomicUsize>,
        fetches: Arc<AtomicUsize>,
        gate: Arc<tokio::sync::Semaphore>,
    }

    impl Store {
        fn new() -> Self {
            let store = Store {
                answer: Arc::new(Mutex::new(Err(StoreDown("not set".into())))),
                history: Arc::new(Mutex::new(Ok(Vec::new()))),
                history_reads: Arc::default(),
                fetches: Arc::default(),
                gate: Arc::new(tokio::sync::Semaphore::new(1000)),
            };
            store.publish("v1", 1);
            store
        }
        fn publish(&self, text: &str, version: i64) {
            *self.answer.lock().unwrap() = Ok(Fetched {
                text: text.into(),
                version: Some(version),
            });
        }
        fn fail(&self, cause: &str) {
            *self.answer.lock().unwrap() = Err(StoreDown(cause.into()));
        }
        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
        /// Sets the history the store gives, as (text, version) pairs in the given order.
        fn keep(&self, versions: &[(&str, i64)]) {
            *self.history.lock().unwrap() = Ok(versions
                .iter()
                .map(|(text, version)| Fetched {
                    text: (*text).into(),
                    version: Some(*version),
                })
                .collect());
        }
        fn history_reads(&self) -> usize {
            self.history_reads.load(Ordering::SeqCst)
        }
    }

    /// The test store's failure.
    #[derive(Debug, Clone, thiserror::Error)]
    #[error("{0}")]
    struct StoreDown(String);

    impl Fetch for Store {
        type Error = StoreDown;
        async fn fetch(&self) -> Result<Fetched, StoreDown> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let _permit = self.gate.acquire().await;
            self.answer.lock().unwrap().clone()
        }
        fn name(&self) -> &str {
            "/test/rules"
        }
        async fn history(&self) -> Result<Vec<Fetched>, StoreDown> {
            self.history_reads.fetch_add(1, Ordering::SeqCst);
            self.history.lock().unwrap().clone()
        }
    }

    /// Accepts documents that start with "v"; the value is the text.
    fn parse(text: &str, _: Option<i64>) -> Result<String, Rejected> {
        if text.starts_with('v') {
            Ok(text.to_owned())
        } else {
            Err("not a v document".into())
        }
    }

    const TTL: Duration = Duration::from_secs(60);

    fn cache(store: &Store, clock: &ManualClock) -> Cached<String, Store, ManualClock> {
        Cached::new(store.clone(), parse, "rules", TTL, clock.clone())
    }

    thread_local! {
        /// What a falling-back cache reported as versions behind, on this test's thread.
        static BEHIND: std::cell::RefCell<Vec<i64>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    fn note_behind(behind: i64) {
        BEHIND.with(|reports| reports.borrow_mut().push(behind));
    }

    fn reported_behind() -> Vec<i64> {
        BEHIND.with(|reports| reports.take())
    }

    /// A cache that falls back to older versions, as the rules' does.
    fn falling_back(store: &Store, clock: &ManualClock) -> Cached<String, Store, ManualClock> {
        cache(store, clock).falling_back(note_behind)
    }

    fn text(value: Option<Arc<String>>) -> Option<String> {
        value.map(|v| v.as_ref().clone())
    }

    #[tokio::test]
    async fn serves_from_memory_until_the_ttl_passes() {
        let (store, clock) = (Store::new(), ManualClock::new());
        let cache = cache(&store, &clock);
        assert_eq!(text(cache.current().await), Some("v1".into()));
        store.publish("v2", 2);
        for _ in 0..100 {
            assert_eq!(text(cache.current().await), Some("v1".into()));
        }
        clock.advance(TTL - Duration::from_millis(1));
        assert_eq!(text(cache.current().await), Some("v1".into()));
        assert_eq!(store.fetches(), 1, "no fetch while fresh");
        clock.advance(Duration::from_millis(1));
        assert_eq!(text(cache.current().await), Some("v2".into()));
        assert_eq!(store.fetches(), 2);
        assert_eq!(cache.version(), Some(2));
        assert_eq!(cache.age(), Some(Duration::ZERO));
        clock.advance(Duration::from_secs(7));
        assert_eq!(cache.age(), Some(Duration::from_secs(7)));
    }

    #[tokio::test]
    async fn a_failed_fetch_keeps_the_last_good_document_and_backs_off() {
        let (store, clock) = (Store::new(), ManualClock::new());
        let cache = cache(&store, &clock);
        cache.current().await;
        store.fail("throttled");
        clock.advance(TTL);
        assert_eq!(text(cache.current().await), Some("v1".into()));
        assert_eq!(store.fetches(), 2);
        for _ in 0..50 {
            assert_eq!(text(cache.current().await), Some("v1".into()));
        }
        assert_eq!(store.fetches(), 2, "no retry before the back-off");
        clock.advance(FIRST_BACKOFF);
        cache.current().await;
        assert_eq!(store.fetches(), 3, "one retry after the first back-off");
        clock.advance(FIRST_BACKOFF);
        cache.current().await;
        assert_eq!(store.fetches(), 3, "the second back-off is twice as long");
        clock.advance(FIRST_BACKOFF);
        cache.current().await;
        assert_eq!(store.fetches(), 4);
        store.publish("v3", 3);
        clock.advance(FIRST_BACKOFF * 4);
        assert_eq!(text(cache.current().await), Some("v3".into()), "recovers");
    }

    #[tokio::test]
    async fn a_rejected_document_is_never_served() {
        let (store, clock) = (Store::new(), ManualClock::new());
        let cache = cache(&store, &clock);
        cache.current().await;
        store.publish("broken", 2);
        clock.advance(TTL);
        assert_eq!(text(cache.current().await), Some("v1".into()));
        assert_eq!(
            cache.version(),
            Some(1),
            "the version in force is the good one"
        );
    }

    #[tokio::test]
    async fn with_no_good_document_callers_get_none_and_retries_back_off() {
        let (store, clock) = (Store::new(), ManualClock::new());
        store.fail("unreachable");
        let cache = cache(&store, &clock);
        assert_eq!(cache.current().await, None);
        assert_eq!(cache.current().await, None);
        assert_eq!(store.fetches(), 1);
        store.publish("v1", 1);
        clock.advance(FIRST_BACKOFF);
        assert_eq!(text(cache.current().await), Some("v1".into()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_fetch_at_a_time_under_concurrent_callers() {
        let (store, clock) = (Store::new(), ManualClock::new());
        let cache = Arc::new(cache(&store, &clock));
        cache.current().await;
        clock.advance(TTL);
        store.publish("v2", 2);
        // Hold the store so the refresh stays under way while others call.
        let held = store.gate.acquire_many(1000).await.unwrap();
        let refresher = tokio::spawn({
            let cache = Arc::clone(&cache);
            async move { text(cache.current().await) }
        });
        while store.fetches() < 2 {
            tokio::task::yield_now().await;
        }
        let mut others = Vec::new();
        for _ in 0..20 {
            let cache = Arc::clone(&cache);
            others.push(tokio::spawn(async move { text(cache.current().await) }));
        }
        for other in others {
            assert_eq!(
                other.await.unwrap(),
                Some("v1".into()),
                "served the last good at once"
            );
        }
        drop(held);
        assert_eq!(refresher.await.unwrap(), Some("v2".into()));
        assert_eq!(store.fetches(), 2, "exactly one refresh");
    }

    #[tokio::test]
    async fn a_cold_cache_falls_back_to_the_newest_valid_version_below_the_rejected_one() {
        let (store, clock) = (Store::new(), ManualClock::new());
        store.publish("broken", 5);
        // In no order; 6 and 7 are above the rejected version (a publish since the read).
        store.keep(&[
            ("v3", 3),
            ("v7", 7),
            ("broken", 5),
            ("v1", 1),
            ("broken", 4),
            ("v6", 6),
            ("v2", 2),
        ]);
        let cache = falling_back(&store, &clock);
        assert_eq!(text(cache.current().await), Some("v3".into()));
        assert_eq!(cache.version(), Some(3), "the version actually served");
        assert_eq!(store.history_reads(), 1);
        assert_eq!(reported_behind(), [2]);
        for _ in 0..20 {
            assert_eq!(text(cache.current().await), Some("v3".into()));
        }
        assert_eq!(
            (store.fetches(), store.history_reads()),
            (1, 1),
            "served from memory"
        );
    }

    #[tokio::test]
    async fn after_a_fall_back_the_current_version_is_tried_every_ttl() {
        let (store, clock) = (Store::new(), ManualClock::new());
        store.publish("broken", 2);
        store.keep(&[("v1", 1), ("broken", 2)]);
        let cache = falling_back(&store, &clock);
        assert_eq!(text(cache.current().await), Some("v1".into()));
        clock.advance(TTL);
        assert_eq!(text(cache.current().await), Some("v1".into()));
        assert_eq!(store.fetches(), 2, "the current version tried again");
        assert_eq!(store.history_reads(), 1, "with v1 in memory, no history");
        assert_eq!(reported_behind(), [1, 1]);
        store.publish("v3", 3);
        clock.advance(TTL);
        assert_eq!(text(cache.current().await), Some("v3".into()));
        assert_eq!(cache.version(), Some(3));
        assert_eq!(reported_behind(), [0]);
    }

    #[tokio::test]
    async fn with_no_valid_older_version_callers_get_none() {
        let (store, clock) = (Store::new(), ManualClock::new());
        store.publish("broken", 3);
        store.keep(&[("broken", 3), ("also broken", 2), ("v4", 4), ("nope", 1)]);
        let cache = falling_back(&store, &clock);
        assert_eq!(cache.current().await, None);
        assert_eq!(cache.version(), None);
        assert_eq!(store.history_reads(), 1);
        assert_eq!(reported_behind(), Vec::<i64>::new(), "nothing in force");
        // Retried with the back-off, history included, not on every call.
        assert_eq!(cache.current().await, None);
        assert_eq!((store.fetches(), store.history_reads()), (1, 1));
        clock.advance(FIRST_BACKOFF);
        assert_eq!(cache.current().await, None);
        assert_eq!((store.fetches(), store.history_reads()), (2, 2));
    }

    #[tokio::test]
    async fn an_unreadable_history_leaves_callers_to_the_fail_policy() {
        let (store, clock) = (Store::new(), ManualClock::new());
        store.publish("broken", 2);
        *store.history.lock().unwrap() = Err(StoreDown("AccessDeniedException".into()));
        let cache = falling_back(&store, &clock);
        assert_eq!(cache.current().await, None);
        assert_eq!(store.history_reads(), 1);
        store.publish("v3", 3);
        clock.advance(FIRST_BACKOFF);
        assert_eq!(text(cache.current().await), Some("v3".into()));
    }

    #[tokio::test]
    async fn a_warm_cache_keeps_its_document_and_never_reads_history() {
        let (store, clock) = (Store::new(), ManualClock::new());
        store.keep(&[("v1", 1), ("v2", 2), ("broken", 3)]);
        let cache = falling_back(&store, &clock);
        assert_eq!(text(cache.current().await), Some("v1".into()));
        store.publish("broken", 3);
        clock.advance(TTL);
        assert_eq!(text(cache.current().await), Some("v1".into()));
        assert_eq!(cache.version(), Some(1));
        assert_eq!(store.history_reads(), 0, "v2 is valid but never looked for");
        assert_eq!(reported_behind(), [0, 2]);
    }

    #[tokio::test]
    async fn a_cache_that_does_not_fall_back_never_reads_history() {
        let (store, clock) = (Store::new(), ManualClock::new());
        store.publish("broken", 2);
        store.keep(&[("v1", 1)]);
        let cache = cache(&store, &clock);
        assert_eq!(cache.current().await, None);
        assert_eq!(store.history_reads(), 0);
        assert_eq!(reported_behind(), Vec::<i64>::new());
    }

    #[test]
    fn the_newest_valid_version_below_is_chosen_whatever_the_order() {
        let fetched = |text: &str, version: Option<i64>| Fetched {
            text: text.into(),
            version,
        };
        let versions = vec![
            fetched("v9", Some(9)),
            fetched("v5", Some(5)),
            fetched("broken", Some(7)),
            fetched("v6", Some(6)),
            fetched("v-unversioned", None),
            fetched("v8", Some(8)),
        ];
        let chosen = |rejected| {
            newest_valid_below(versions.clone(), rejected, parse).map(|(_, version)| version)
        };
        assert_eq!(chosen(8), Some(6), "7 is invalid, 8 and 9 are not below");
        assert_eq!(chosen(10), Some(9));
        assert_eq!(chosen(6), Some(5));
        assert_eq!(chosen(5), None);
        assert_eq!(
            newest_valid_below(Vec::new(), 3, parse).map(|(v, _)| v),
            None
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_the_ttl() {
        let secs = |n| backoff(n, Duration::from_secs(600)).as_secs();
        assert_eq!(
            (secs(1), secs(2), secs(3), secs(6), secs(40)),
            (1, 2, 4, 30, 30)
        );
        assert_eq!(backoff(10, Duration::from_secs(5)), Duration::from_secs(5));
    }
}
