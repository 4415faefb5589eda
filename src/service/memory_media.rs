//! Recording media in memory, beside the other ports' in-memory adapters (re-exported by
//! [`super::memory`]): objects by bucket and key with their count of versions, keys whose
//! removal S3 would refuse, and the removals asked for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::media::S3Object;
use crate::ports::{MediaError, MediaStore, Removed};

/// Buckets in memory, changed as S3 would change them: a removal takes every version of the
/// key and nothing else, a refused key keeps all of its.
#[derive(Debug, Default)]
pub struct MemoryMedia {
    state: Mutex<MediaState>,
    /// Removals asked for, refused ones and those of absent objects included.
    pub removals: AtomicUsize,
    /// Every removal fails, as with S3 unreachable, while set.
    pub down: AtomicBool,
}

#[derive(Debug, Default)]
struct MediaState {
    /// (bucket, key) to its versions and delete markers.
    objects: HashMap<(String, String), usize>,
    /// (bucket, key) to the reason S3 gives for refusing its removal.
    refused: HashMap<(String, String), String>,
}

fn at(bucket: &str, key: &str) -> (String, String) {
    (bucket.to_owned(), key.to_owned())
}

impl MemoryMedia {
    fn state(&self) -> MutexGuard<'_, MediaState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores an object with this many versions and delete markers.
    pub fn put(&self, bucket: &str, key: &str, versions: usize) {
        self.state().objects.insert(at(bucket, key), versions);
    }

    /// Makes the removal of this key refused, with S3's reason (`AccessDenied: ...`).
    pub fn refuse(&self, bucket: &str, key: &str, reason: &str) {
        let reason = reason.to_owned();
        self.state().refused.insert(at(bucket, key), reason);
    }

    /// The versions and delete markers the key has now: 0 once removed.
    pub fn versions(&self, bucket: &str, key: &str) -> usize {
        let state = self.state();
        state.objects.get(&at(bucket, key)).copied().unwrap_or(0)
    }
}

impl MediaStore for MemoryMedia {
    async fn remove(&self, object: &S3Object) -> Result<Removed, MediaError> {
        self.removals.fetch_add(1, Ordering::Relaxed);
        if self.down.load(Ordering::Relaxed) {
            return Err(MediaError::Unavailable {
                operation: "ListObjectVersions",
                cause: "could not be sent".into(),
            });
        }
        let mut state = self.state();
        let key = at(&object.bucket, &object.key);
        if let Some(reason) = state.refused.get(&key) {
            return Err(MediaError::Refused {
                operation: "DeleteObject",
                reason: reason.clone(),
            });
        }
        let versions = state.objects.remove(&key).unwrap_or(0);
        Ok(Removed { versions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str) -> S3Object {
        S3Object {
            bucket: "media".into(),
            key: key.into(),
            region: None,
        }
    }

    #[tokio::test]
    async fn a_removal_takes_every_version_of_the_key_alone() {
        let media = MemoryMedia::default();
        media.put("media", "rec/RE1.wav", 4);
        media.put("media", "rec/RE1.wav.bak", 1);
        let removed = media.remove(&object("rec/RE1.wav")).await;
        assert_eq!(removed, Ok(Removed { versions: 4 }));
        assert_eq!(media.versions("media", "rec/RE1.wav"), 0);
        assert_eq!(media.versions("media", "rec/RE1.wav.bak"), 1);
        let again = media.remove(&object("rec/RE1.wav")).await;
        assert_eq!(again, Ok(Removed { versions: 0 }));
        assert_eq!(media.removals.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_refused_key_keeps_its_versions_and_says_why() {
        let media = MemoryMedia::default();
        media.put("media", "locked.wav", 1);
        media.refuse("media", "locked.wav", "AccessDenied: Access Denied");
        let refused = media.remove(&object("locked.wav")).await.unwrap_err();
        assert_eq!(
            refused.to_string(),
            "S3 refused DeleteObject: AccessDenied: Access Denied"
        );
        assert_eq!(media.versions("media", "locked.wav"), 1);
        media.down.store(true, Ordering::Relaxed);
        let down = media.remove(&object("other.wav")).await.unwrap_err();
        assert!(matches!(down, MediaError::Unavailable { .. }), "{down}");
    }
}
