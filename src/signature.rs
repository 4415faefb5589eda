//! `X-Twilio-Signature`: base64(HMAC-SHA1(auth token, URL + every POST parameter)), and for
//! a JSON body the URL alone, with the body's SHA-256 in its `bodySHA256` parameter. Pure.
//!
//! As Twilio's SDKs compute it: parameter names sorted in byte order, each name's distinct
//! values sorted, every name and value concatenated with no delimiter; the URL exactly as
//! called, accepted with and without the scheme's default port.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

/// An HMAC-SHA1 is 20 bytes; its base64 is 28 characters. Anything longer is not one.
const MAX_SIGNATURE_CHARS: usize = 64;

/// The parameters in the order Twilio signs them: names in byte order, a repeated name's
/// values sorted, exact repeats counted once.
fn signing_order(params: &[(String, String)]) -> Vec<(&str, &str)> {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
}

/// The string Twilio signs for a URL and a set of POST parameters.
pub fn signed_payload(url: &str, params: &[(String, String)]) -> String {
    let sorted = signing_order(params);
    let mut payload = String::with_capacity(
        url.len() + sorted.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(),
    );
    payload.push_str(url);
    for (name, value) in sorted {
        payload.push_str(name);
        payload.push_str(value);
    }
    payload
}

/// The MAC over the signed payload, fed piece by piece rather than built as one string.
fn mac(token: &str, url: &str, sorted: &[(&str, &str)]) -> HmacSha1 {
    let mut mac =
        HmacSha1::new_from_slice(token.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The signature for one token (what TaskRouter sends).
pub fn sign(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mac = mac(token, url, &signing_order(params));
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `signature` is valid for any of `tokens` and any accepted form of `url`. Each MAC
/// is compared in constant time. The search stops at the first match: the URL as called and
/// the first token in force come first, so a genuine callback costs one MAC, while a forged
/// one costs them all, whatever it holds; the only thing the time says is which form and
/// token the caller signed with, which a caller that has a token knows already.
pub fn is_valid<T: AsRef<str>>(
    tokens: &[T],
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> bool {
    if signature.len() > MAX_SIGNATURE_CHARS {
        return false;
    }
    let Ok(expected) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    let sorted = signing_order(params);
    let signed_for = |url: &str| {
        tokens.iter().any(|token| {
            mac(token.as_ref(), url, &sorted)
                .verify_slice(&expected)
                .is_ok()
        })
    };
    signed_for(url) || other_port_form(url).is_some_and(|other| signed_for(&other))
}

/// How a JSON delivery (Event Streams) fares against its signature: the signature covers
/// the URL alone, and the URL's `bodySHA256` query parameter must be the hex SHA-256 of the
/// body, so the body is covered through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySignature {
    Valid,
    /// The URL has no `bodySHA256` parameter, or more than one.
    NoBodyHash,
    /// `bodySHA256` is not the body's SHA-256.
    BodyMismatch,
    /// The signature does not cover the URL.
    Invalid,
}

/// Checks a JSON delivery, as Twilio's SDKs validate a request with a body: the body's hash
/// against the URL's `bodySHA256` (lowercase hex, as Twilio sends it), then the signature
/// over the URL with no parameters. The signature is checked whatever the body, so a
/// mismatched body says nothing about the token.
pub fn check_with_body<T: AsRef<str>>(
    tokens: &[T],
    url: &str,
    body: &[u8],
    signature: &str,
) -> BodySignature {
    let signed = is_valid(tokens, url, &[], signature);
    match (body_hash(url), signed) {
        (_, false) => BodySignature::Invalid,
        (None, true) => BodySignature::NoBodyHash,
        (Some(hash), true) if hash == sha256_hex(body) => BodySignature::Valid,
        (Some(_), true) => BodySignature::BodyMismatch,
    }
}

/// The URL's one `bodySHA256` query parameter.
fn body_hash(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or_default();
    let mut hashes = form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| name == "bodySHA256")
        .map(|(_, value)| value.into_owned());
    let hash = hashes.next()?;
    hashes.next().is_none().then_some(hash)
}

/// The body's SHA-256 in lowercase hex.
pub fn sha256_hex(body: &[u8]) -> String {
    use sha2::Digest;
    use std::fmt::Write;
    let digest = sha2::Sha256::digest(body);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// The URL as given, plus the same URL with the scheme's default port added (when it has no
/// port) or with its port removed (when it has one, default or not), as Twilio's SDKs accept
/// both.
pub fn url_variants(url: &str) -> Vec<String> {
    std::iter::once(url.to_owned())
        .chain(other_port_form(url))
        .collect()
}

/// The URL with the scheme's default port added, or its port removed; `None` for a URL
/// that is not `http` or `https`.
fn other_port_form(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // Credentials in the authority (user:pass@host) are kept as they are.
    let (userinfo, host_port) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    // The port follows the last ':' that is not inside an IPv6 literal.
    let port_colon = host_port
        .rfind(':')
        .filter(|&i| !host_port[i..].contains(']'));
    let host_port = match port_colon {
        Some(i) => host_port[..i].to_owned(),
        None => format!("{host_port}:{default_port}"),
    };
    Some(format!("{scheme}://{userinfo}{host_port}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_known_signature() {
        // Computed with Twilio's Python SDK (RequestValidator.compute_signature).
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let p = params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(sign("12345", url, &p), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert!(is_valid(
            &["wrong", "12345"],
            url,
            &p,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!is_valid(
            &["wrong"],
            url,
            &p,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
    }

    #[test]
    fn the_payload_sorts_names_and_repeated_values() {
        let p = params(&[("b", "2"), ("a", "z"), ("a", "y"), ("a", "y"), ("B", "1")]);
        assert_eq!(signed_payload("https://h/p", &p), "https://h/pB1ayazb2");
    }

    #[test]
    fn default_ports_are_added_and_any_port_removed() {
        assert_eq!(
            url_variants("https://h.example/a?b=1"),
            ["https://h.example/a?b=1", "https://h.example:443/a?b=1"]
        );
        assert_eq!(
            url_variants("https://h.example:443/a"),
            ["https://h.example:443/a", "https://h.example/a"]
        );
        assert_eq!(
            url_variants("http://127.0.0.1:3000/a"),
            ["http://127.0.0.1:3000/a", "http://127.0.0.1/a"]
        );
        assert_eq!(
            url_variants("https://[::1]:8443/a"),
            ["https://[::1]:8443/a", "https://[::1]/a"]
        );
        assert_eq!(
            url_variants("http://[::1]/a"),
            ["http://[::1]/a", "http://[::1]:80/a"]
        );
        assert_eq!(
            url_variants("https://u:p@h"),
            ["https://u:p@h", "https://u:p@h:443"]
        );
        assert_eq!(url_variants("not a url"), ["not a url"]);
    }

    #[test]
    fn a_json_delivery_is_covered_through_its_body_hash() {
        let body = br#"[{"type":"com.twilio.taskrouter.task.updated"}]"#;
        let hash = sha256_hex(body);
        let url = format!("https://h.example/events?bodySHA256={hash}");
        let signature = sign("t", &url, &[]);
        assert_eq!(
            check_with_body(&["t"], &url, body, &signature),
            BodySignature::Valid
        );
        assert_eq!(
            check_with_body(&["t"], &url, b"[]", &signature),
            BodySignature::BodyMismatch
        );
        assert_eq!(
            check_with_body(&["other"], &url, body, &signature),
            BodySignature::Invalid
        );
        let bare = "https://h.example/events";
        assert_eq!(
            check_with_body(&["t"], bare, body, &sign("t", bare, &[])),
            BodySignature::NoBodyHash
        );
        let twice = format!("{url}&bodySHA256={hash}");
        assert_eq!(
            check_with_body(&["t"], &twice, body, &sign("t", &twice, &[])),
            BodySignature::NoBodyHash
        );
        // The SHA-256 of "abc", FIPS 180-2's first example.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn malformed_signatures_are_invalid() {
        let p = params(&[("a", "1")]);
        for bad in ["", "%%%", "dGVzdA==", &"A".repeat(10_000)] {
            assert!(!is_valid(&["t"], "https://h/", &p, bad), "{bad}");
        }
        assert!(!is_valid::<&str>(
            &[],
            "https://h/",
            &p,
            &sign("t", "https://h/", &p)
        ));
    }
}
