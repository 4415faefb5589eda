//! In-memory adapters for the ledger and the recordings archive, beside the other ports'
//! (re-exported by [`super::memory`]). They keep what the real ones keep and count the
//! requests a real one would make, so the use cases' costs are checked without AWS or Twilio.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::ledger::{CallAccount, FirstDecision, RecordingAction, Tie, Verdict};
use crate::ports::{
    ArchivePage, ArchivedRecording, LEDGER_BATCH, Ledger, PageRef, RecordingArchive,
};

/// Why the in-memory ledger or archive did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("the ledger is down")]
    LedgerDown,
    #[error("Voice API answered 500 on list")]
    ListFailed,
    #[error("Voice API answered 429 on list")]
    RateLimited,
}

/// The ledger in memory: calls by TaskSid, ties by conference, call or recording SID.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    state: Mutex<LedgerState>,
    /// Read requests made, as a batching store would count them.
    pub reads: AtomicUsize,
    pub writes: AtomicUsize,
    /// Every request fails while set.
    pub down: AtomicBool,
}

#[derive(Debug, Default)]
struct LedgerState {
    calls: HashMap<String, CallAccount>,
    ties: HashMap<String, Tie>,
}

impl MemoryLedger {
    fn state(&self) -> MutexGuard<'_, LedgerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn up(&self) -> Result<(), Unavailable> {
        if self.down.load(Ordering::Relaxed) {
            Err(Unavailable::LedgerDown)
        } else {
            Ok(())
        }
    }

    fn read(&self, requests: usize) -> Result<(), Unavailable> {
        self.up()?;
        self.reads.fetch_add(requests, Ordering::Relaxed);
        Ok(())
    }

    fn write(&self) -> Result<(), Unavailable> {
        self.up()?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Ties `sid` to the call unless it is tied to another already (the first call wins).
    fn tie(state: &mut LedgerState, sid: &str, task_sid: &str) {
        let first = state
            .calls
            .get(task_sid)
            .and_then(|c| c.first.as_ref())
            .map(Verdict::from);
        match state.ties.get(sid) {
            Some(Tie::Task {
                task_sid: other, ..
            }) if other != task_sid => {}
            // Already tied to this call with this decision: nothing to write.
            Some(Tie::Task {
                task_sid: other,
                first: known,
            }) if other == task_sid && *known == first => {}
            _ => {
                state.ties.insert(
                    sid.to_owned(),
                    Tie::Task {
                        task_sid: task_sid.to_owned(),
                        first,
                    },
                );
            }
        }
    }
}

impl Ledger for MemoryLedger {
    type Error = Unavailable;

    async fn first_decision(&self, first: &FirstDecision) -> Result<FirstDecision, Unavailable> {
        self.write()?;
        let mut state = self.state();
        if !state.calls.contains_key(&first.task_sid) {
            let call = CallAccount {
                task_sid: first.task_sid.clone(),
                first: None,
                call_sid: None,
                conference_sid: None,
                actions: Vec::new(),
            };
            state.calls.insert(first.task_sid.clone(), call);
        }
        let Some(call) = state.calls.get_mut(&first.task_sid) else {
            return Err(Unavailable::LedgerDown);
        };
        let standing = call.first.get_or_insert_with(|| first.clone()).clone();
        if call.call_sid.is_none() {
            call.call_sid = first.call_sid.clone();
        }
        if call.conference_sid.is_none() {
            call.conference_sid = first.conference_sid.clone();
        }
        for sid in [&first.call_sid, &first.conference_sid]
            .into_iter()
            .flatten()
        {
            Self::tie(&mut state, sid, &first.task_sid);
        }
        Ok(standing)
    }

    async fn decision(&self, task_sid: &str) -> Result<Option<FirstDecision>, Unavailable> {
        self.read(1)?;
        let state = self.state();
        Ok(state.calls.get(task_sid).and_then(|c| c.first.clone()))
    }

    async fn record_actions(
        &self,
        task_sid: &str,
        conference_sid: Option<&str>,
        actions: &[RecordingAction],
    ) -> Result<(), Unavailable> {
        self.write()?;
        let mut state = self.state();
        let call = state
            .calls
            .entry(task_sid.to_owned())
            .or_insert_with(|| CallAccount {
                task_sid: task_sid.to_owned(),
                first: None,
                call_sid: None,
                conference_sid: None,
                actions: Vec::new(),
            });
        call.actions.extend_from_slice(actions);
        if call.conference_sid.is_none() {
            call.conference_sid = conference_sid.map(str::to_owned);
        }
        let sids: Vec<String> = actions
            .iter()
            .map(|a| a.recording_sid.clone())
            .chain(conference_sid.map(str::to_owned))
            .collect();
        for sid in sids {
            Self::tie(&mut state, &sid, task_sid);
        }
        Ok(())
    }

    async fn ties(&self, sids: &[String]) -> Result<HashMap<String, Tie>, Unavailable> {
        self.read(sids.len().div_ceil(LEDGER_BATCH))?;
        let state = self.state();
        Ok(sids
            .iter()
            .filter_map(|sid| state.ties.get(sid).map(|t| (sid.clone(), t.clone())))
            .collect())
    }

    async fn verdicts(
        &self,
        task_sids: &[String],
    ) -> Result<HashMap<String, Verdict>, Unavailable> {
        self.read(task_sids.len().div_ceil(LEDGER_BATCH))?;
        let state = self.state();
        Ok(task_sids
            .iter()
            .filter_map(|sid| {
                let first = state.calls.get(sid)?.first.as_ref()?;
                Some((sid.clone(), Verdict::from(first)))
            })
            .collect())
    }

    async fn tie_conference(&self, conference_sid: &str, tie: &Tie) -> Result<(), Unavailable> {
        self.write()?;
        let mut state = self.state();
        match state.ties.get(conference_sid) {
            Some(Tie::Task { task_sid, .. }) if !matches!(tie, Tie::Task { task_sid: same, .. } if same == task_sid) =>
                {}
            _ => {
                state.ties.insert(conference_sid.to_owned(), tie.clone());
            }
        }
        if let Tie::Task { task_sid, .. } = tie
            && let Some(call) = state.calls.get_mut(task_sid)
            && call.conference_sid.is_none()
        {
            call.conference_sid = Some(conference_sid.to_owned());
        }
        Ok(())
    }

    async fn account(&self, sid: &str) -> Result<Option<CallAccount>, Unavailable> {
        self.read(1)?;
        let state = self.state();
        let task_sid = match state.ties.get(sid) {
            Some(Tie::Task { task_sid, .. }) => task_sid.as_str(),
            _ => sid,
        };
        Ok(state.calls.get(task_sid).cloned())
    }
}

/// The account's recordings in memory, listed in pages as the Voice API lists them.
#[derive(Debug, Default)]
pub struct Archive {
    pub recordings: Mutex<Vec<ArchivedRecording>>,
    /// Conferences' friendly names by SID.
    pub conferences: Mutex<HashMap<String, String>>,
    /// Recordings per page (the Voice API's `PageSize`); 1,000 when zero.
    pub page_size: usize,
    pub pages_read: AtomicUsize,
    pub conferences_read: AtomicUsize,
    /// The page (counted from 1) that fails, and how: `429` (asked again) or `500`.
    pub failing_page: Mutex<Option<(usize, Unavailable)>>,
}

impl RecordingArchive for Archive {
    type Error = Unavailable;

    async fn page(
        &self,
        _account_sid: &str,
        page: PageRef<'_>,
    ) -> Result<ArchivePage, Unavailable> {
        self.pages_read.fetch_add(1, Ordering::Relaxed);
        let start = match page {
            PageRef::First { .. } => 0,
            PageRef::Next(uri) => uri.parse().unwrap_or(usize::MAX),
        };
        let number = start / self.size() + 1;
        {
            let mut failing = self
                .failing_page
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((at, how)) = failing.clone()
                && at == number
            {
                // A 429 passes once asked again.
                if how == Unavailable::RateLimited {
                    *failing = None;
                }
                return Err(how);
            }
        }
        let recordings = self
            .recordings
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let end = start.saturating_add(self.size()).min(recordings.len());
        let slice = recordings.get(start..end).unwrap_or_default().to_vec();
        Ok(ArchivePage {
            recordings: slice,
            next: (end < recordings.len()).then(|| end.to_string()),
            unreadable: Vec::new(),
        })
    }

    async fn conference_name(
        &self,
        _account_sid: &str,
        conference_sid: &str,
    ) -> Result<Option<String>, Unavailable> {
        self.conferences_read.fetch_add(1, Ordering::Relaxed);
        let conferences = self
            .conferences
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(conferences.get(conference_sid).cloned())
    }

    fn retry_after(error: &Unavailable) -> Option<std::time::Duration> {
        (*error == Unavailable::RateLimited).then_some(std::time::Duration::from_millis(1))
    }
}

impl Archive {
    fn size(&self) -> usize {
        if self.page_size == 0 {
            1_000
        } else {
            self.page_size
        }
    }
}
