//! Recording media in the customer's bucket (SPEC section 11), against moto's S3: every
//! version and delete marker of exactly the recording's key is removed, in a versioned bucket
//! or not, read from a `media_url` as Twilio writes it; neighbours that share the key's prefix
//! stay; an absent object is no error; a deletion S3 refuses (Object Lock, a bucket policy)
//! is refused with S3's reason and leaves the object; versions over several pages are all
//! found.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{BucketVersioningStatus, ObjectLockMode, VersioningConfiguration};
use conditional_recording::media::{MediaLocation, S3Object, locate};
use conditional_recording::ports::{MediaError, MediaStore, Removed};
use conditional_recording::sources::media_store::S3Media;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::counting::CountingProxy;
use crate::moto::{Moto, runtime, sdk_config};
use crate::support::free_port;

const KEY: &str = "rec/RE1.wav";
/// Keys that share a prefix with [`KEY`], or that it shares one with.
const NEIGHBOURS: [&str; 3] = ["rec/RE1.wav.bak", "rec/RE1", "rec/RE1.wav/part"];

fn object(bucket: &str, key: &str) -> S3Object {
    S3Object {
        bucket: bucket.into(),
        key: key.into(),
        region: None,
    }
}

pub async fn create_bucket(s3: &Client, bucket: &str) {
    let created = s3.create_bucket().bucket(bucket).send().await;
    created.unwrap_or_else(|e| panic!("CreateBucket {bucket}: {e:?}"));
}

pub async fn create_versioned_bucket(s3: &Client, bucket: &str) {
    create_bucket(s3, bucket).await;
    let enabled = VersioningConfiguration::builder()
        .status(BucketVersioningStatus::Enabled)
        .build();
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(enabled)
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutBucketVersioning {bucket}: {e:?}"));
}

pub async fn put(s3: &Client, bucket: &str, key: &str) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from_static(b"RIFF audio"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutObject {key}: {e:?}"));
}

/// The versions and delete markers of exactly `key`, as S3 lists them.
pub async fn versions(s3: &Client, bucket: &str, key: &str) -> usize {
    let listed = s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("ListObjectVersions {key}: {e:?}"));
    let versions = listed.versions().iter().map(|v| v.key());
    let markers = listed.delete_markers().iter().map(|d| d.key());
    versions.chain(markers).filter(|k| *k == Some(key)).count()
}

#[test]
fn an_unversioned_bucket_loses_the_object_and_nothing_that_shares_its_prefix() {
    let moto = Moto::start();
    let s3 = moto.s3();
    let media = S3Media::new(&sdk_config(&moto.endpoint()));
    runtime().block_on(async {
        create_bucket(&s3, "media-plain").await;
        for key in [KEY].iter().chain(&NEIGHBOURS) {
            put(&s3, "media-plain", key).await;
        }

        let removed = media.remove(&object("media-plain", KEY)).await;
        assert_eq!(removed, Ok(Removed { versions: 1 }));
        assert_eq!(versions(&s3, "media-plain", KEY).await, 0);
        for neighbour in NEIGHBOURS {
            assert_eq!(
                versions(&s3, "media-plain", neighbour).await,
                1,
                "{neighbour}"
            );
        }

        // The shorter key alone, not the longer ones it prefixes.
        let removed = media.remove(&object("media-plain", "rec/RE1")).await;
        assert_eq!(removed, Ok(Removed { versions: 1 }));
        assert_eq!(versions(&s3, "media-plain", "rec/RE1.wav.bak").await, 1);
        assert_eq!(versions(&s3, "media-plain", "rec/RE1.wav/part").await, 1);

        // Gone already, or never there: nothing to remove, and no error.
        for absent in [KEY, "rec/RE2.wav"] {
            let removed = media.remove(&object("media-plain", absent)).await;
            assert_eq!(removed, Ok(Removed { versions: 0 }), "{absent}");
        }
    });
}

#[test]
fn a_versioned_bucket_loses_every_version_and_delete_marker_over_several_pages() {
    let moto = Moto::start();
    let s3 = moto.s3();
    let requests = CountingProxy::start(&moto.endpoint());
    // Two entries a page: the key's four span two pages, and the third holds neighbours.
    let media = S3Media::new(&sdk_config(&requests.endpoint())).with_page_size(2);
    runtime().block_on(async {
        create_versioned_bucket(&s3, "media-versioned").await;
        for _ in 0..3 {
            put(&s3, "media-versioned", KEY).await;
        }
        // A delete without a version ID only hides the object behind a delete marker.
        s3.delete_object()
            .bucket("media-versioned")
            .key(KEY)
            .send()
            .await
            .expect("DeleteObject");
        for neighbour in NEIGHBOURS {
            put(&s3, "media-versioned", neighbour).await;
            put(&s3, "media-versioned", neighbour).await;
        }
        assert_eq!(versions(&s3, "media-versioned", KEY).await, 4);
        let first_page = s3
            .list_object_versions()
            .bucket("media-versioned")
            .prefix(KEY)
            .max_keys(2)
            .send()
            .await
            .expect("ListObjectVersions");
        assert_eq!(
            first_page.is_truncated(),
            Some(true),
            "S3 pages: {first_page:?}"
        );
        assert_eq!(first_page.next_key_marker(), Some(KEY));

        let removed = media.remove(&object("media-versioned", KEY)).await;
        assert_eq!(removed, Ok(Removed { versions: 4 }));
        // Three pages to find them (the third ends past the key), one delete each, and the
        // page that finds none left.
        assert_eq!(requests.count("GET /media-versioned/"), 4);
        assert_eq!(requests.count("DELETE /media-versioned/rec/RE1.wav"), 4);
        assert_eq!(requests.counts().len(), 2, "{:?}", requests.counts());
        assert_eq!(versions(&s3, "media-versioned", KEY).await, 0);
        for neighbour in NEIGHBOURS {
            assert_eq!(
                versions(&s3, "media-versioned", neighbour).await,
                2,
                "{neighbour}"
            );
        }

        // A neighbour's five versions, one a page.
        let one_a_page = S3Media::new(&sdk_config(&moto.endpoint())).with_page_size(1);
        for _ in 0..3 {
            put(&s3, "media-versioned", "rec/RE1").await;
        }
        let removed = one_a_page
            .remove(&object("media-versioned", "rec/RE1"))
            .await;
        assert_eq!(removed, Ok(Removed { versions: 5 }));
        assert_eq!(versions(&s3, "media-versioned", "rec/RE1").await, 0);
        assert_eq!(versions(&s3, "media-versioned", "rec/RE1.wav.bak").await, 2);
    });
}

/// What Twilio's URL encodes in a key: everything but unreserved characters and `/`.
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'+')
    .add(b'%')
    .add(b'?')
    .add(b'#')
    .add(b'"')
    .add(b'<')
    .add(b'>');

#[test]
fn a_key_with_spaces_and_plus_signs_is_read_from_its_url_and_removed_exactly() {
    let moto = Moto::start();
    let s3 = moto.s3();
    let media = S3Media::new(&sdk_config(&moto.endpoint()));
    let key = "AC0123/RE 1+2 été.wav";
    // What reading the `+` as a form would name instead.
    let as_a_form = "AC0123/RE 1 2 été.wav";
    let encoded = utf8_percent_encode(key, PATH).to_string();
    assert_eq!(encoded, "AC0123/RE%201%2B2%20%C3%A9t%C3%A9.wav");
    runtime().block_on(async {
        create_versioned_bucket(&s3, "media.eu").await;
        for url in [
            format!("https://media.eu.s3.amazonaws.com/{encoded}?X-Amz-Signature=secret"),
            // The `+` as written, and the region in the host.
            format!(
                "https://s3.eu-west-1.amazonaws.com/media.eu/{}",
                encoded.replace("%2B", "+")
            ),
        ] {
            put(&s3, "media.eu", key).await;
            put(&s3, "media.eu", as_a_form).await;
            let MediaLocation::S3(object) = locate(&url) else {
                panic!("{url} names no S3 object");
            };
            assert_eq!(
                (object.bucket.as_str(), object.key.as_str()),
                ("media.eu", key)
            );
            let removed = media.remove(&object).await;
            assert_eq!(removed, Ok(Removed { versions: 1 }), "{url}");
            assert_eq!(versions(&s3, "media.eu", key).await, 0);
            assert!(versions(&s3, "media.eu", as_a_form).await >= 1);
        }
    });
}

#[test]
fn a_deletion_s3_refuses_is_refused_with_its_reason_and_the_object_stays() {
    let moto = Moto::start();
    let s3 = moto.s3();
    let media = S3Media::new(&sdk_config(&moto.endpoint()));
    runtime().block_on(async {
        s3.create_bucket()
            .bucket("media-locked")
            .object_lock_enabled_for_bucket(true)
            .send()
            .await
            .expect("CreateBucket with Object Lock");
        let a_day_on = std::time::SystemTime::now() + std::time::Duration::from_secs(86_400);
        s3.put_object()
            .bucket("media-locked")
            .key(KEY)
            .body(ByteStream::from_static(b"RIFF audio"))
            .object_lock_mode(ObjectLockMode::Compliance)
            .object_lock_retain_until_date(DateTime::from(a_day_on))
            .send()
            .await
            .expect("PutObject under a retention");

        let refused = media.remove(&object("media-locked", KEY)).await;
        let Err(MediaError::Refused { operation, reason }) = refused else {
            panic!("refused: {refused:?}");
        };
        assert_eq!(operation, "DeleteObject");
        assert!(reason.starts_with("AccessDenied"), "{reason}");
        assert_eq!(versions(&s3, "media-locked", KEY).await, 1);

        // A bucket policy that denies deletion.
        create_bucket(&s3, "media-guarded").await;
        put(&s3, "media-guarded", KEY).await;
        let deny = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Deny",
            "Principal": "*", "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
            "Resource": "arn:aws:s3:::media-guarded/*"}]}"#;
        s3.put_bucket_policy()
            .bucket("media-guarded")
            .policy(deny)
            .send()
            .await
            .expect("PutBucketPolicy");
        let refused = media.remove(&object("media-guarded", KEY)).await;
        // moto answers a bare 403 where S3 would say AccessDenied: what reached the
        // service is all the reason there is.
        let Err(MediaError::Refused { operation, reason }) = refused else {
            panic!("refused: {refused:?}");
        };
        assert_eq!(operation, "DeleteObject");
        assert!(reason.contains("403"), "{reason}");
        assert_eq!(versions(&s3, "media-guarded", KEY).await, 1);

        // A bucket that does not exist is a refusal too, with S3's code.
        let refused = media.remove(&object("media-gone", KEY)).await;
        let Err(MediaError::Refused { operation, reason }) = refused else {
            panic!("refused: {refused:?}");
        };
        assert_eq!(operation, "ListObjectVersions");
        assert!(reason.starts_with("NoSuchBucket"), "{reason}");
    });
}

#[test]
fn an_s3_that_cannot_be_reached_is_unavailable_not_refused() {
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let media = S3Media::new(&sdk_config(&nowhere));
    let failed = runtime().block_on(media.remove(&object("media", KEY)));
    assert_eq!(
        failed,
        Err(MediaError::Unavailable {
            operation: "ListObjectVersions",
            cause: "could not be sent".into()
        })
    );
    assert_eq!(
        failed.unwrap_err().to_string(),
        "S3 ListObjectVersions: could not be sent"
    );
}
