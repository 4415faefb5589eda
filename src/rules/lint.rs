//! Warnings for a valid document that probably does not say what its author meant: a queue
//! entry that looks like a mistyped SID, an entry written twice, an include rule that an
//! exclude rule makes useless. Run by `check`; the service applies such documents as written.

use serde_json::Value;

use super::document::is_queue_sid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Warnings for a document that `Rules::from_value` accepted.
pub fn lint(document: &Value) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let list = |key: &str| {
        document
            .get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    let mut warn = |path: String, message: String| warnings.push(Warning { path, message });

    if document.get("enabled") == Some(&Value::Bool(false)) {
        warn(
            "enabled".into(),
            "false: no rule applies and every call is recorded".into(),
        );
    }

    for key in ["exclude_queues", "include_queues"] {
        let entries = list(key);
        for (index, entry) in entries.iter().enumerate() {
            let Some(name) = entry.as_str() else { continue };
            let path = format!("{key}[{index}]");
            if looks_like_a_sid(name) && !is_queue_sid(name) {
                warn(
                    path.clone(),
                    format!(
                        "{name:?} looks like a TaskQueue SID but is not one (WQ and 32 lowercase hex digits); it is matched as a queue name"
                    ),
                );
            } else if !is_queue_sid(name) {
                warn(
                    path.clone(),
                    "a queue name: resolved through the TaskRouter REST API, which needs credentials (TWILIO_AUTH_TOKEN, TWILIO_AUTH_TOKEN_PARAMETER or TWILIO_API_KEY)".into(),
                );
            }
            if let Some(first) = entries[..index].iter().position(|e| e == entry) {
                warn(path, format!("duplicate of {key}[{first}]"));
            }
        }
    }

    for key in ["exclude_attributes", "include_attributes", "voice_tasks"] {
        let conditions = list(key);
        for (index, condition) in conditions.iter().enumerate() {
            builtin_names(condition, &format!("{key}[{index}]"), &mut warn);
            if let Some(first) = conditions[..index].iter().position(|c| c == condition) {
                warn(
                    format!("{key}[{index}]"),
                    format!("duplicate of {key}[{first}]"),
                );
            }
        }
    }

    let pairs = [
        ("include_queues", "exclude_queues"),
        ("include_attributes", "exclude_attributes"),
    ];
    for (include, exclude) in pairs {
        for (index, entry) in list(include).iter().enumerate() {
            if let Some(excluded) = list(exclude).iter().position(|e| e == entry) {
                warn(
                    format!("{include}[{index}]"),
                    format!(
                        "useless: {exclude}[{excluded}] excludes the same calls, and exclusion wins"
                    ),
                );
            }
        }
    }
    warnings
}

/// Names every JavaScript value of some type answers to without having them as its own
/// members: `length` (strings and arrays), and what every object inherits.
const JAVASCRIPT_BUILT_INS: &[&str] = &[
    "length",
    "constructor",
    "__proto__",
    "hasOwnProperty",
    "isPrototypeOf",
    "propertyIsEnumerable",
    "toLocaleString",
    "toString",
    "valueOf",
    "__defineGetter__",
    "__defineSetter__",
    "__lookupGetter__",
    "__lookupSetter__",
];

/// Warns for each `key` (here or inside `all`) with a segment the Flex template, which walks
/// the path in JavaScript, would read as a built-in property.
fn builtin_names(condition: &Value, path: &str, warn: &mut impl FnMut(String, String)) {
    if let Some(inner) = condition.get("all").and_then(Value::as_array) {
        for (index, condition) in inner.iter().enumerate() {
            builtin_names(condition, &format!("{path}.all[{index}]"), warn);
        }
    }
    let Some(key) = condition.get("key").and_then(Value::as_str) else {
        return;
    };
    if let Some(name) = key.split('.').find(|s| JAVASCRIPT_BUILT_INS.contains(s)) {
        warn(
            format!("{path}.key"),
            format!(
                "{name:?} is a JavaScript built-in name: the Flex template would read it on any value (\"abc\".length is 3, constructor.name is \"Object\"); this service reads only the task's own attributes, so the two can decide differently"
            ),
        );
    }
}

/// `WQ`/`wq` followed by hex-ish characters: what a SID copied with a typo looks like.
fn looks_like_a_sid(name: &str) -> bool {
    name.len() >= 20
        && name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("wq"))
        && name[2..].chars().all(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(document: Value) -> Vec<String> {
        lint(&document).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_clean_document_has_no_warning() {
        let clean = json!({"enabled": true, "exclude_queues": ["WQ0123456789abcdef0123456789abcdef"],
            "exclude_attributes": [{"key": "direction", "value": "outbound"}]});
        assert_eq!(messages(clean), Vec::<String>::new());
    }

    #[test]
    fn mistyped_sids_duplicates_and_useless_includes() {
        let document = json!({
            "enabled": true,
            "exclude_queues": ["WQ0123456789ABCDEF0123456789ABCDEF", "WQ0123456789abcdef0123456789abcde", "WQ11111111111111111111111111111111", "WQ11111111111111111111111111111111"],
            "exclude_attributes": [{"key": "direction", "value": "outbound"}, {"key": "direction", "value": "outbound"}],
            "include_attributes": [{"key": "direction", "value": "outbound"}],
            "include_queues": ["Sales", "WQ11111111111111111111111111111111"],
        });
        assert_eq!(
            messages(document),
            [
                "exclude_queues[0]: \"WQ0123456789ABCDEF0123456789ABCDEF\" looks like a TaskQueue SID but is not one (WQ and 32 lowercase hex digits); it is matched as a queue name",
                "exclude_queues[1]: \"WQ0123456789abcdef0123456789abcde\" looks like a TaskQueue SID but is not one (WQ and 32 lowercase hex digits); it is matched as a queue name",
                "exclude_queues[3]: duplicate of exclude_queues[2]",
                "include_queues[0]: a queue name: resolved through the TaskRouter REST API, which needs credentials (TWILIO_AUTH_TOKEN, TWILIO_AUTH_TOKEN_PARAMETER or TWILIO_API_KEY)",
                "exclude_attributes[1]: duplicate of exclude_attributes[0]",
                "include_queues[1]: useless: exclude_queues[2] excludes the same calls, and exclusion wins",
                "include_attributes[0]: useless: exclude_attributes[0] excludes the same calls, and exclusion wins",
            ]
        );
    }

    #[test]
    fn keys_through_javascript_built_ins_are_worth_a_word() {
        let document = json!({
            "enabled": true,
            "exclude_attributes": [
                {"key": "caller.length", "value": 12},
                {"all": [{"key": "direction", "value": "outbound"}, {"key": "customer.constructor.name", "value": "Object"}]},
                {"key": "lengthy", "value": 1},
                {"pointer": "/length", "value": 1},
            ],
            "voice_tasks": [{"key": "__proto__.x", "exists": true}],
        });
        let built_in = |name: &str| {
            format!(
                "{name:?} is a JavaScript built-in name: the Flex template would read it on any value (\"abc\".length is 3, constructor.name is \"Object\"); this service reads only the task's own attributes, so the two can decide differently"
            )
        };
        assert_eq!(
            messages(document),
            [
                format!("exclude_attributes[0].key: {}", built_in("length")),
                format!(
                    "exclude_attributes[1].all[1].key: {}",
                    built_in("constructor")
                ),
                format!("voice_tasks[0].key: {}", built_in("__proto__")),
            ]
        );
    }

    #[test]
    fn disabled_is_worth_a_word() {
        assert_eq!(
            messages(json!({"enabled": false})),
            ["enabled: false: no rule applies and every call is recorded"]
        );
    }
}
