//! Twilio SIDs: a two-letter prefix naming the kind, then 32 hex digits. The one shape check;
//! a leaf.
//!
//! What the service is sent (callbacks, events, rules) is held to the lowercase hex Twilio
//! writes. Twilio's answers are read as its API specification describes them
//! (`^RE[0-9a-fA-F]{32}$`): either case, and kept as given, since nothing says Twilio reads
//! a SID's case back as the same SID.

/// Whether `s` is a SID with this prefix (`WT` a task, `WQ` a queue, `AC` an account, ...),
/// its digits lowercase.
pub fn is_sid(s: &str, prefix: &str) -> bool {
    has_shape(s, prefix, |b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` is a SID with this prefix, its hex digits of either case: a SID in a Voice API
/// answer. Only hex digits follow the prefix, so it is safe in a URL path.
pub fn is_sid_any_case(s: &str, prefix: &str) -> bool {
    has_shape(s, prefix, |b| b.is_ascii_hexdigit())
}

fn has_shape(s: &str, prefix: &str, digit: impl Fn(u8) -> bool) -> bool {
    s.len() == 34 && s.starts_with(prefix) && s.bytes().skip(2).all(digit)
}

#[cfg(test)]
mod tests {
    use super::{is_sid, is_sid_any_case};

    #[test]
    fn a_sid_is_its_prefix_and_32_lowercase_hex_digits() {
        assert!(is_sid("WQ0123456789abcdef0123456789abcdef", "WQ"));
        assert!(!is_sid("WQ0123456789ABCDEF0123456789ABCDEF", "WQ"));
        assert!(!is_sid("WQ0123456789abcdef0123456789abcde", "WQ"));
        assert!(!is_sid("WT0123456789abcdef0123456789abcdef", "WQ"));
        assert!(!is_sid("WQ0123456789abcdef0123456789abcdeg", "WQ"));
        assert!(!is_sid("", "WQ"));
    }

    #[test]
    fn a_sid_in_an_answer_may_have_uppercase_hex_digits() {
        for sid in [
            "RE0123456789abcdef0123456789abcdef",
            "RE0123456789ABCDEF0123456789ABCDEF",
            "RE0123456789AbCdEf0123456789aBcDeF",
        ] {
            assert!(is_sid_any_case(sid, "RE"), "{sid}");
        }
        for not in [
            "re0123456789abcdef0123456789abcdef",
            "RE0123456789ABCDEF0123456789ABCDEG",
            "RE0123456789ABCDEF0123456789ABCDE",
            "RE0123456789ABCDEF/123456789ABCDEF",
            "CA0123456789ABCDEF0123456789ABCDEF",
            "",
        ] {
            assert!(!is_sid_any_case(not, "RE"), "{not}");
        }
    }
}
