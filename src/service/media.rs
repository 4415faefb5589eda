//! A recording's audio in the customer's own bucket (SPEC section 11), cleared before its
//! Twilio resource is deleted: the resource is the pointer to the audio, so a removal that
//! fails keeps it for the next attempt, and `deleted` is said only once no copy remains.
//! Shared by enforcement and reconciliation; S3 is reached through the [`MediaStore`] port.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::media::{self, MediaLocation, S3Object};
use crate::ports::{MediaError, MediaStore, Removed};

/// How long a finished recording's object may be missing before it counts as gone: Twilio
/// writes it to the bucket once the recording is finished, and a missing one is retried by
/// the sweep until then.
pub const ABSENT_GRACE_SECONDS: i64 = 24 * 3_600;

/// [`MediaStore`] behind a pointer. Removing media is rare and off the answer's path, so
/// one boxed future per removal costs nothing that matters, and the service's ports need no
/// seventh type parameter.
trait RemoveMedia: Send + Sync {
    fn remove<'a>(
        &'a self,
        object: &'a S3Object,
    ) -> Pin<Box<dyn Future<Output = Result<Removed, MediaError>> + Send + 'a>>;
}

impl<M: MediaStore> RemoveMedia for M {
    fn remove<'a>(
        &'a self,
        object: &'a S3Object,
    ) -> Pin<Box<dyn Future<Output = Result<Removed, MediaError>> + Send + 'a>> {
        Box::pin(MediaStore::remove(self, object))
    }
}

/// The service's hold on recording media: where it may delete (`RECORDINGS_BUCKETS`) and
/// how. Without buckets, media in any bucket is not the service's to delete.
#[derive(Clone, Default)]
pub struct Media {
    store: Option<Arc<dyn RemoveMedia>>,
    buckets: Arc<[String]>,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media")
            .field("buckets", &self.buckets)
            .finish_non_exhaustive()
    }
}

/// What became of a recording's media, and so whether its Twilio resource may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleared {
    /// Twilio holds the audio (or the recording names none): deleting the resource deletes it.
    Twilio,
    /// Every version and delete marker of the object was removed.
    Removed { object: S3Object, versions: usize },
    /// No version of the object exists. `gone` once the recording is over
    /// [`ABSENT_GRACE_SECONDS`] old: the resource may then go; before, Twilio may still be
    /// writing it, and the resource is kept.
    Absent { object: S3Object, gone: bool },
    /// Not removed, with why; the resource is kept. `retry` when a later attempt may do
    /// better (S3 unavailable); not for a bucket not allowed or a refusal.
    Failed {
        object: Option<S3Object>,
        cause: String,
        retry: bool,
    },
}

impl Cleared {
    /// Whether the Twilio resource may now be deleted.
    pub fn resource_may_go(&self) -> bool {
        match self {
            Cleared::Twilio | Cleared::Removed { .. } => true,
            Cleared::Absent { gone, .. } => *gone,
            Cleared::Failed { .. } => false,
        }
    }

    /// Reconciliation's `media` column: `deleted`, `absent`, `failed`, or `None` when Twilio
    /// holds the audio.
    pub fn word(&self) -> Option<&'static str> {
        match self {
            Cleared::Twilio => None,
            Cleared::Removed { .. } => Some("deleted"),
            Cleared::Absent { .. } => Some("absent"),
            Cleared::Failed { .. } => Some("failed"),
        }
    }
}

impl Media {
    /// No media store: media in a bucket is `failed`, "bucket not allowed".
    pub fn none() -> Media {
        Media::default()
    }

    /// Media in `buckets` removed through `store`.
    pub fn new<M: MediaStore>(store: M, buckets: Vec<String>) -> Media {
        Media {
            store: Some(Arc::new(store)),
            buckets: buckets.into(),
        }
    }

    /// Whether a recording's media is somewhere other than Twilio (`kept` in a report): the
    /// `media` word of a recording nothing was done to.
    pub fn held_outside_twilio(media_url: Option<&str>) -> bool {
        media_url.is_some_and(|url| !matches!(media::locate(url), MediaLocation::Twilio))
    }

    /// Clears a finished recording's media before its Twilio resource goes. `age_seconds`
    /// is how long ago the recording was made, when known; unknown, an absent object is
    /// never taken for gone.
    pub async fn clear(&self, media_url: Option<&str>, age_seconds: Option<i64>) -> Cleared {
        let object = match media_url.map(media::locate) {
            None | Some(MediaLocation::Twilio) => return Cleared::Twilio,
            Some(MediaLocation::S3(object)) => object,
            Some(MediaLocation::Elsewhere) => {
                return Cleared::Failed {
                    object: None,
                    cause: "media_url names neither Twilio nor one S3 object: where the audio \
                            is cannot be known, so the recording is kept"
                        .to_owned(),
                    retry: false,
                };
            }
        };
        let store = match &self.store {
            Some(store) if media::allowed(&self.buckets, &object) => store,
            _ => {
                return Cleared::Failed {
                    cause: format!(
                        "bucket not allowed: {} is not in RECORDINGS_BUCKETS",
                        object.bucket
                    ),
                    object: Some(object),
                    retry: false,
                };
            }
        };
        match store.remove(&object).await {
            Ok(Removed { versions: 0 }) => Cleared::Absent {
                gone: age_seconds.is_some_and(|age| age >= ABSENT_GRACE_SECONDS),
                object,
            },
            Ok(Removed { versions }) => Cleared::Removed { object, versions },
            Err(error) => Cleared::Failed {
                retry: matches!(error, MediaError::Unavailable { .. }),
                cause: error.to_string(),
                object: Some(object),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::memory::MemoryMedia;

    const URL: &str =
        "https://media-bucket.s3.us-east-1.amazonaws.com/rec/RE1.wav?X-Amz-Signature=abc";

    fn ready<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let waker = std::task::Waker::noop();
        match future
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker))
        {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("the in-memory store waited"),
        }
    }

    fn object() -> S3Object {
        S3Object {
            bucket: "media-bucket".into(),
            key: "rec/RE1.wav".into(),
            region: Some("us-east-1".into()),
        }
    }

    #[test]
    fn what_becomes_of_a_recordings_media() {
        let store = MemoryMedia::default();
        store.put("media-bucket", "rec/RE1.wav", 3);
        let media = Media::new(store, vec!["media-bucket".into()]);
        let day = ABSENT_GRACE_SECONDS;
        let twilio = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1";
        assert_eq!(ready(media.clear(Some(twilio), Some(0))), Cleared::Twilio);
        assert_eq!(ready(media.clear(None, None)), Cleared::Twilio);
        assert_eq!(
            ready(media.clear(Some(URL), Some(60))),
            Cleared::Removed {
                object: object(),
                versions: 3
            }
        );
        // Gone now: absent, and gone only past the grace period (or never, age unknown).
        for (age, gone) in [(Some(60), false), (Some(day), true), (None, false)] {
            assert_eq!(
                ready(media.clear(Some(URL), age)),
                Cleared::Absent {
                    object: object(),
                    gone
                },
                "{age:?}"
            );
        }
        let elsewhere = ready(media.clear(Some("https://example.com/a.wav"), Some(day)));
        assert!(
            matches!(
                &elsewhere,
                Cleared::Failed {
                    object: None,
                    retry: false,
                    ..
                }
            ),
            "{elsewhere:?}"
        );
        assert!(!elsewhere.resource_may_go());
    }

    #[test]
    fn a_bucket_not_listed_or_no_store_is_never_touched() {
        let store = MemoryMedia::default();
        store.put("other-bucket", "rec/RE1.wav", 1);
        let media = Media::new(store, vec!["media-bucket".into()]);
        let url = "https://other-bucket.s3.amazonaws.com/rec/RE1.wav";
        let cleared = ready(media.clear(Some(url), Some(0)));
        let Cleared::Failed { cause, retry, .. } = &cleared else {
            panic!("{cleared:?}");
        };
        assert!(cause.starts_with("bucket not allowed"), "{cause}");
        assert!(!retry && !cleared.resource_may_go());
        assert_eq!(cleared.word(), Some("failed"));
        let none = ready(Media::none().clear(Some(URL), Some(0)));
        assert!(matches!(none, Cleared::Failed { .. }), "{none:?}");
    }

    #[test]
    fn a_refusal_keeps_the_resource_with_s3s_reason() {
        let store = MemoryMedia::default();
        store.put("media-bucket", "rec/RE1.wav", 1);
        store.refuse(
            "media-bucket",
            "rec/RE1.wav",
            "AccessDenied: object is under retention",
        );
        let media = Media::new(store, vec!["media-bucket".into()]);
        let cleared = ready(media.clear(Some(URL), Some(0)));
        let Cleared::Failed { cause, retry, .. } = &cleared else {
            panic!("{cleared:?}");
        };
        assert!(cause.contains("retention"), "{cause}");
        assert!(!retry && !cleared.resource_may_go());
    }
}
