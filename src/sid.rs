//! Twilio SIDs: a two-letter prefix naming the kind, then 32 lowercase hex digits. The one
//! shape check; a leaf.

/// Whether `s` is a SID with this prefix (`WT` a task, `WQ` a queue, `AC` an account, ...).
pub fn is_sid(s: &str, prefix: &str) -> bool {
    s.len() == 34
        && s.starts_with(prefix)
        && s.bytes()
            .skip(2)
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::is_sid;

    #[test]
    fn a_sid_is_its_prefix_and_32_lowercase_hex_digits() {
        assert!(is_sid("WQ0123456789abcdef0123456789abcdef", "WQ"));
        assert!(!is_sid("WQ0123456789ABCDEF0123456789ABCDEF", "WQ"));
        assert!(!is_sid("WQ0123456789abcdef0123456789abcde", "WQ"));
        assert!(!is_sid("WT0123456789abcdef0123456789abcdef", "WQ"));
        assert!(!is_sid("WQ0123456789abcdef0123456789abcdeg", "WQ"));
        assert!(!is_sid("", "WQ"));
    }
}
