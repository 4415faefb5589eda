//! Where a recording's audio lives (SPEC section 11), read from its `media_url`: on Twilio's
//! own host, in an S3 bucket (Twilio's external storage writes to the customer's), or
//! elsewhere. And the buckets the service may delete from (`RECORDINGS_BUCKETS`). Pure: no
//! I/O.
//!
//! A URL names an object only when its key can be read back exactly: a path the URL parser
//! would rewrite (`.` and `..` segments, backslashes, tabs), a stray `%` or a key that is not
//! UTF-8 names none, so the service never deletes a neighbour of the object Twilio wrote.

use std::fmt;

use percent_encoding::percent_decode_str;
use url::Url;

/// The longest key S3 stores, in bytes of UTF-8.
const MAX_KEY_BYTES: usize = 1024;

/// Where a recording's audio is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaLocation {
    /// On a `twilio.com` host: Twilio holds the audio, and deleting the recording deletes it.
    Twilio,
    /// An object in S3: the customer's bucket.
    S3(S3Object),
    /// Anywhere else, or a URL that does not name one object exactly.
    Elsewhere,
}

/// One S3 object: the key, decoded, as S3 stores it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Object {
    pub bucket: String,
    pub key: String,
    /// The region the URL's host names (`s3.eu-west-1`, `s3-eu-west-1`); `None` for the
    /// global hosts (`s3.amazonaws.com`).
    pub region: Option<String>,
}

impl fmt::Display for S3Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Reads a recording's `media_url`. The query and fragment (a presigned URL's signature,
/// say) are dropped: nothing returned carries them.
pub fn locate(media_url: &str) -> MediaLocation {
    let Ok(url) = Url::parse(media_url) else {
        return MediaLocation::Elsewhere;
    };
    if !matches!(url.scheme(), "https" | "http") {
        return MediaLocation::Elsewhere;
    }
    let Some(url::Host::Domain(host)) = url.host() else {
        return MediaLocation::Elsewhere;
    };
    if host == "twilio.com" || host.ends_with(".twilio.com") {
        return MediaLocation::Twilio;
    }
    if !url.username().is_empty() || url.password().is_some() {
        return MediaLocation::Elsewhere;
    }
    s3_object(media_url, &url, host).map_or(MediaLocation::Elsewhere, MediaLocation::S3)
}

/// The object an S3 URL names, virtual-hosted (`BUCKET.s3[.REGION].amazonaws.com/KEY`) or
/// path-style (`s3[.REGION].amazonaws.com/BUCKET/KEY`).
fn s3_object(text: &str, url: &Url, host: &str) -> Option<S3Object> {
    let rest = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let path = exact_path(text, url)?;
    let path = path.strip_prefix('/')?;
    let labels: Vec<&str> = rest.split('.').collect();
    if let Some(region) = s3_endpoint(&labels) {
        let (bucket, key) = path.split_once('/')?;
        return object(decode(bucket)?, key, region);
    }
    // The bucket may hold dots, even `.s3.`: the endpoint is the last labels, so a bucket
    // named `my.s3.media` is read whole from `my.s3.media.s3.amazonaws.com`.
    (1..labels.len()).rev().find_map(|at| {
        let region = s3_endpoint(&labels[at..])?;
        object(labels[..at].join("."), path, region)
    })
}

/// The region an S3 endpoint's labels (before `amazonaws.com`) name: `s3` (none),
/// `s3.REGION`, `s3-REGION` (the older form) or `s3.dualstack.REGION`. `None` when they are
/// no S3 endpoint (a website or access point endpoint, say).
fn s3_endpoint(labels: &[&str]) -> Option<Option<String>> {
    let region = match labels {
        ["s3"] => return Some(None),
        // The original name of the global endpoint's us-east-1 alias.
        ["s3-external-1"] => "us-east-1",
        [dashed] => dashed.strip_prefix("s3-")?,
        ["s3", region] | ["s3", "dualstack", region] => region,
        _ => return None,
    };
    is_region(region).then(|| Some(region.to_owned()))
}

/// `us-east-1`, `us-gov-west-1`, `cn-north-1`: an area (two letters, or `eusc` for the
/// European Sovereign Cloud), words, then a number, by hyphens. Not `website-us-east-1` or
/// `fips-us-east-1`: those hosts are other endpoints.
fn is_region(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let word = |part: &&str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase());
    match parts.as_slice() {
        [area, middle @ .., last] if !middle.is_empty() => {
            word(area)
                && (area.len() == 2 || *area == "eusc")
                && middle.iter().all(word)
                && !last.is_empty()
                && last.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

fn object(bucket: String, key: &str, region: Option<String>) -> Option<S3Object> {
    let key = decode(key)?;
    if bucket_problem(&bucket).is_some() || key.is_empty() || key.len() > MAX_KEY_BYTES {
        return None;
    }
    Some(S3Object {
        bucket,
        key,
        region,
    })
}

/// The URL's path as it was written (encoded), when the parser kept it as written: with no
/// `.` or `..` segment resolved, no backslash turned into a slash, nothing stripped.
fn exact_path<'a>(text: &'a str, url: &Url) -> Option<&'a str> {
    let after_scheme = text.split_once("://")?.1;
    let end = after_scheme.find(['?', '#']).unwrap_or(after_scheme.len());
    let written = &after_scheme[..end];
    let written = &written[written.find('/')?..];
    // The parser percent-encodes some characters (a space, say) and leaves the rest as
    // written: the two agree, decoded, unless it rewrote the path.
    (decode(written)? == decode(url.path())?).then_some(written)
}

/// Percent-decodes a path or a part of one (a `+` is a plus: this is a path, not a form),
/// when every `%` starts an escape and the result is UTF-8.
fn decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let escapes_whole = bytes.iter().enumerate().all(|(at, &b)| {
        b != b'%'
            || bytes
                .get(at + 1..at + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_whole {
        return None;
    }
    let decoded = percent_decode_str(encoded).decode_utf8().ok()?;
    Some(decoded.into_owned())
}

/// A `RECORDINGS_BUCKETS` entry that is no S3 bucket name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?} is not an S3 bucket name: {problem}")]
pub struct BucketsError {
    pub entry: String,
    pub problem: &'static str,
}

/// The buckets named in `RECORDINGS_BUCKETS`: comma-separated names, each checked against
/// S3's naming rules, so a typo is found at start and not at the first deletion. Blank
/// entries (a trailing comma) are skipped; an empty list allows no bucket.
pub fn parse_buckets(text: &str) -> Result<Vec<String>, BucketsError> {
    let mut buckets: Vec<String> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if let Some(problem) = bucket_problem(entry) {
            return Err(BucketsError {
                entry: entry.to_owned(),
                problem,
            });
        }
        if !buckets.iter().any(|b| b == entry) {
            buckets.push(entry.to_owned());
        }
    }
    Ok(buckets)
}

/// Whether the service may delete from the object's bucket.
pub fn allowed(buckets: &[String], object: &S3Object) -> bool {
    buckets.contains(&object.bucket)
}

/// What breaks S3's rules for general purpose bucket names, if anything.
fn bucket_problem(name: &str) -> Option<&'static str> {
    let bytes = name.as_bytes();
    let letter_or_digit = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !(3..=63).contains(&name.len()) {
        return Some("it must be 3 to 63 characters long");
    }
    if !bytes
        .iter()
        .all(|b| letter_or_digit(b) || *b == b'.' || *b == b'-')
    {
        return Some("it may hold only lowercase letters, digits, dots and hyphens");
    }
    if !bytes.first().is_some_and(letter_or_digit) || !bytes.last().is_some_and(letter_or_digit) {
        return Some("it must begin and end with a letter or digit");
    }
    if name.contains("..") {
        return Some("it must not hold two dots in a row");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("it must not be an IP address");
    }
    if ["xn--", "sthree-", "amzn-s3-demo-"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        return Some("S3 reserves the prefixes xn--, sthree- and amzn-s3-demo-");
    }
    if ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
        .iter()
        .any(|s| name.ends_with(s))
    {
        return Some("S3 reserves the suffixes -s3alias, --ol-s3, .mrap, --x-s3 and --table-s3");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s3(bucket: &str, key: &str, region: Option<&str>) -> MediaLocation {
        MediaLocation::S3(S3Object {
            bucket: bucket.into(),
            key: key.into(),
            region: region.map(Into::into),
        })
    }

    #[test]
    fn a_media_url_names_where_the_audio_is() {
        let key = "AC0123/RE0123.wav";
        let cases = [
            // Virtual-hosted.
            (
                "https://media.s3.amazonaws.com/AC0123/RE0123.wav",
                s3("media", key, None),
            ),
            (
                "https://media.s3.eu-west-1.amazonaws.com/AC0123/RE0123.wav",
                s3("media", key, Some("eu-west-1")),
            ),
            (
                "https://media.s3-eu-west-1.amazonaws.com/AC0123/RE0123.wav",
                s3("media", key, Some("eu-west-1")),
            ),
            (
                "https://media.s3.dualstack.us-gov-west-1.amazonaws.com/AC0123/RE0123.wav",
                s3("media", key, Some("us-gov-west-1")),
            ),
            (
                "https://media.s3.cn-north-1.amazonaws.com.cn/AC0123/RE0123.wav",
                s3("media", key, Some("cn-north-1")),
            ),
            (
                "https://media.s3-external-1.amazonaws.com/AC0123/RE0123.wav",
                s3("media", key, Some("us-east-1")),
            ),
            // Path-style.
            (
                "https://s3.amazonaws.com/media/AC0123/RE0123.wav",
                s3("media", key, None),
            ),
            (
                "https://s3.eu-west-1.amazonaws.com/media/AC0123/RE0123.wav",
                s3("media", key, Some("eu-west-1")),
            ),
            (
                "https://s3-eu-west-1.amazonaws.com/media/AC0123/RE0123.wav",
                s3("media", key, Some("eu-west-1")),
            ),
            (
                "https://s3.amazonaws.com/my.media/AC0123/RE0123.wav",
                s3("my.media", key, None),
            ),
            // Dots in the bucket, even `.s3.` and a label like a region: the endpoint is
            // the last labels.
            (
                "https://my.media.s3.amazonaws.com/AC0123/RE0123.wav",
                s3("my.media", key, None),
            ),
            (
                "https://my.s3.media.s3.amazonaws.com/AC0123/RE0123.wav",
                s3("my.s3.media", key, None),
            ),
            (
                "https://my.bucket.s3.example.s3.us-east-1.amazonaws.com/AC0123/RE0123.wav",
                s3("my.bucket.s3.example", key, Some("us-east-1")),
            ),
            (
                "https://a.s3.eu-west-1.s3-us-west-2.amazonaws.com/k",
                s3("a.s3.eu-west-1", "k", Some("us-west-2")),
            ),
            (
                "https://s3.media.s3.amazonaws.com/k",
                s3("s3.media", "k", None),
            ),
            // The key decoded as a path: `%20` a space, `%2B` and `+` a plus, `%2F` a slash
            // in the key.
            (
                "https://media.s3.amazonaws.com/rec/a%20b+c%2Bd.wav",
                s3("media", "rec/a b+c+d.wav", None),
            ),
            (
                "https://s3.amazonaws.com/media/rec/a%20b+c%2Bd.wav",
                s3("media", "rec/a b+c+d.wav", None),
            ),
            (
                "https://media.s3.amazonaws.com/a%2Fb/%C3%A9t%C3%A9",
                s3("media", "a/b/été", None),
            ),
            (
                "https://media.s3.amazonaws.com/a b",
                s3("media", "a b", None),
            ),
            (
                "https://media.s3.amazonaws.com//lead",
                s3("media", "/lead", None),
            ),
            (
                "https://media.s3.amazonaws.com/folder/",
                s3("media", "folder/", None),
            ),
            // Query and fragment dropped; the host's case does not matter; http is S3 too.
            (
                "https://media.s3.amazonaws.com/k.wav?X-Amz-Signature=abc&X-Amz-Credential=x#f",
                s3("media", "k.wav", None),
            ),
            (
                "https://s3.amazonaws.com/media/k.wav?versionId=1",
                s3("media", "k.wav", None),
            ),
            (
                "https://MEDIA.S3.AMAZONAWS.COM/Key.WAV",
                s3("media", "Key.WAV", None),
            ),
            ("http://media.s3.amazonaws.com/k", s3("media", "k", None)),
            (
                "https://media.s3.amazonaws.com:443/k",
                s3("media", "k", None),
            ),
            // Twilio's own hosts.
            (
                "https://api.twilio.com/2010-04-01/Accounts/AC0123/Recordings/RE0123",
                MediaLocation::Twilio,
            ),
            (
                "https://media.twilio.com/v1/Recordings/RE0123",
                MediaLocation::Twilio,
            ),
            ("http://twilio.com/x", MediaLocation::Twilio),
            // Anywhere else.
            ("https://twilio.com.example/x", MediaLocation::Elsewhere),
            ("https://nottwilio.com/x", MediaLocation::Elsewhere),
            ("https://media.example.com/k.wav", MediaLocation::Elsewhere),
            ("http://127.0.0.1:5000/media/k", MediaLocation::Elsewhere),
            (
                "https://media.s3.amazonaws.com.example/k",
                MediaLocation::Elsewhere,
            ),
            (
                "https://media.s3-website-us-east-1.amazonaws.com/k",
                MediaLocation::Elsewhere,
            ),
            (
                "https://media.s3-website.eu-west-1.amazonaws.com/k",
                MediaLocation::Elsewhere,
            ),
            (
                "https://s3-fips-us-gov-west-1.amazonaws.com/media/k",
                MediaLocation::Elsewhere,
            ),
            (
                "https://s3-fips.us-east-1.amazonaws.com/media/k",
                MediaLocation::Elsewhere,
            ),
            (
                "https://ap-123456789012.s3-accesspoint.us-east-1.amazonaws.com/k",
                MediaLocation::Elsewhere,
            ),
            (
                "https://media.s3.example.amazonaws.com/k",
                MediaLocation::Elsewhere,
            ),
            (
                "https://dynamodb.us-east-1.amazonaws.com/k",
                MediaLocation::Elsewhere,
            ),
            ("ftp://media.s3.amazonaws.com/k", MediaLocation::Elsewhere),
            (
                "https://user:pw@media.s3.amazonaws.com/k",
                MediaLocation::Elsewhere,
            ),
            // No object: an empty key, no bucket, a bucket S3 would not name.
            ("https://media.s3.amazonaws.com/", MediaLocation::Elsewhere),
            ("https://media.s3.amazonaws.com", MediaLocation::Elsewhere),
            (
                "https://media.s3.amazonaws.com/?prefix=k",
                MediaLocation::Elsewhere,
            ),
            ("https://s3.amazonaws.com/media", MediaLocation::Elsewhere),
            ("https://s3.amazonaws.com/media/", MediaLocation::Elsewhere),
            ("https://s3.amazonaws.com/", MediaLocation::Elsewhere),
            ("https://s3.amazonaws.com/Media/k", MediaLocation::Elsewhere),
            ("https://s3.amazonaws.com/me/k", MediaLocation::Elsewhere),
            ("https://s3.s3.amazonaws.com/k", MediaLocation::Elsewhere),
            ("https://.s3.amazonaws.com/k", MediaLocation::Elsewhere),
            // A key that cannot be read back exactly.
            (
                "https://media.s3.amazonaws.com/rec/../other.wav",
                MediaLocation::Elsewhere,
            ),
            (
                "https://media.s3.amazonaws.com/rec/%2e%2e/other.wav",
                MediaLocation::Elsewhere,
            ),
            (
                "https://media.s3.amazonaws.com/rec/./k",
                MediaLocation::Elsewhere,
            ),
            (
                "https://media.s3.amazonaws.com/rec\\k",
                MediaLocation::Elsewhere,
            ),
            (
                "https://media.s3.amazonaws.com/re\tc/k",
                MediaLocation::Elsewhere,
            ),
            (
                "https://media.s3.amazonaws.com/100%.wav",
                MediaLocation::Elsewhere,
            ),
            (
                "https://media.s3.amazonaws.com/%ff.wav",
                MediaLocation::Elsewhere,
            ),
            // Not URLs.
            ("", MediaLocation::Elsewhere),
            ("media.s3.amazonaws.com/k", MediaLocation::Elsewhere),
            ("https://", MediaLocation::Elsewhere),
            ("https://[::1/k", MediaLocation::Elsewhere),
            ("not a url at all", MediaLocation::Elsewhere),
        ];
        for (url, location) in cases {
            assert_eq!(locate(url), location, "{url}");
        }
    }

    #[test]
    fn a_key_longer_than_s3_stores_is_no_object() {
        let longest = "k".repeat(MAX_KEY_BYTES);
        let url = format!("https://media.s3.amazonaws.com/{longest}");
        assert_eq!(locate(&url), s3("media", &longest, None));
        assert_eq!(locate(&format!("{url}k")), MediaLocation::Elsewhere);
    }

    #[test]
    fn an_object_is_shown_without_its_region() {
        let MediaLocation::S3(object) =
            locate("https://media.s3.eu-west-1.amazonaws.com/rec/a%20b.wav?X-Amz-Signature=s")
        else {
            panic!("an S3 object");
        };
        assert_eq!(object.to_string(), "s3://media/rec/a b.wav");
    }

    #[test]
    fn the_allowed_buckets_are_named_ones_only() {
        let buckets = parse_buckets(" media-eu , my.media,,media-eu,").unwrap();
        assert_eq!(buckets, ["media-eu", "my.media"]);
        let object = |bucket: &str| S3Object {
            bucket: bucket.into(),
            key: "k".into(),
            region: None,
        };
        assert!(allowed(&buckets, &object("my.media")));
        assert!(!allowed(&buckets, &object("media")));
        assert!(!allowed(&buckets, &object("media-eu2")));
        assert!(!allowed(&[], &object("media-eu")));
        assert_eq!(parse_buckets("").unwrap(), Vec::<String>::new());
        assert_eq!(parse_buckets(" , ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_bad_bucket_name_is_named_with_its_problem() {
        let cases = [
            ("ab", "it must be 3 to 63 characters long"),
            (&"a".repeat(64), "it must be 3 to 63 characters long"),
            (
                "Media",
                "it may hold only lowercase letters, digits, dots and hyphens",
            ),
            (
                "my_media",
                "it may hold only lowercase letters, digits, dots and hyphens",
            ),
            (
                "s3://media",
                "it may hold only lowercase letters, digits, dots and hyphens",
            ),
            ("-media", "it must begin and end with a letter or digit"),
            ("media.", "it must begin and end with a letter or digit"),
            ("my..media", "it must not hold two dots in a row"),
            ("192.168.5.4", "it must not be an IP address"),
            (
                "xn--media",
                "S3 reserves the prefixes xn--, sthree- and amzn-s3-demo-",
            ),
            (
                "media-s3alias",
                "S3 reserves the suffixes -s3alias, --ol-s3, .mrap, --x-s3 and --table-s3",
            ),
        ];
        for (entry, problem) in cases {
            let error = parse_buckets(&format!("good-one,{entry}")).unwrap_err();
            assert_eq!(
                error,
                BucketsError {
                    entry: entry.to_owned(),
                    problem
                },
                "{entry}"
            );
        }
        assert_eq!(
            parse_buckets("media,My_Media").unwrap_err().to_string(),
            "\"My_Media\" is not an S3 bucket name: it may hold only lowercase letters, \
             digits, dots and hyphens"
        );
        for good in ["abc", "my.media.eu", "1-2-3", &"a".repeat(63)] {
            assert_eq!(parse_buckets(good).unwrap(), [good]);
        }
    }

    fn url_like() -> impl Strategy<Value = String> {
        let host = prop::sample::select(vec![
            "media.s3.amazonaws.com",
            "s3.amazonaws.com",
            "s3-eu-west-1.amazonaws.com",
            "a.s3.s3.eu-west-1.amazonaws.com",
            "api.twilio.com",
            "s3.amazonaws.com.cn",
            "",
        ]);
        (
            prop::sample::select(vec!["https://", "http://", "", "s3://"]),
            host,
            "[a-zA-Z0-9%./+ ?#\\\\-]{0,24}",
            "[a-z0-9.-]{0,12}",
        )
            .prop_map(|(scheme, host, path, label)| format!("{scheme}{label}{host}/{path}"))
    }

    proptest! {
        #[test]
        fn no_media_url_panics(text in any::<String>(), url in url_like()) {
            let _ = locate(&text);
            if let MediaLocation::S3(object) = locate(&url) {
                prop_assert!(!object.key.is_empty());
                prop_assert!(bucket_problem(&object.bucket).is_none());
                prop_assert!(!object.key.contains(['?', '#']) || url.contains('%'));
            }
            let _ = parse_buckets(&text);
        }
    }
}
