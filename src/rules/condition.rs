//! Conditions on TaskAttributes: where a value lives (`key` or `pointer`) and how it is
//! compared (`value`, `any_of`, `prefix`, `regex`, `exists`), plus `all` for conjunctions.
//!
//! Matching follows the Flex template's `conditional_recording` matcher: strict JSON-type
//! equality, array containment, and missing or null never matching.

use regex::Regex;
use serde_json::Value;

use super::HashSet;

/// A compiled condition, evaluated many times against different TaskAttributes.
#[derive(Debug)]
pub enum Condition {
    Match {
        path: AttributePath,
        matcher: Matcher,
    },
    All(Vec<Condition>),
}

impl Condition {
    /// The document's word for this condition's matcher, or `all`.
    pub fn kind(&self) -> &'static str {
        match self {
            Condition::All(_) => "all",
            Condition::Match { matcher, .. } => match matcher {
                Matcher::Equals(_) => "value",
                Matcher::AnyOf(_) => "any_of",
                Matcher::Prefix(_) => "prefix",
                Matcher::Regex(_) => "regex",
                Matcher::Exists(_) => "exists",
            },
        }
    }

    pub fn matches(&self, attributes: &Value) -> bool {
        match self {
            Condition::Match { path, matcher } => matcher.matches(path.resolve(attributes)),
            Condition::All(conditions) => conditions.iter().all(|c| c.matches(attributes)),
        }
    }
}

/// Where a condition looks inside TaskAttributes.
#[derive(Debug)]
pub enum AttributePath {
    /// `key`: dot-separated segments, as the template's `key`.
    Dotted(Vec<String>),
    /// `pointer`: RFC 6901, for keys that themselves contain dots.
    Pointer(String),
}

impl AttributePath {
    pub fn resolve<'v>(&self, attributes: &'v Value) -> Option<&'v Value> {
        match self {
            AttributePath::Dotted(segments) => segments
                .iter()
                .try_fold(attributes, |value, segment| step(value, segment)),
            AttributePath::Pointer(pointer) => attributes.pointer(pointer),
        }
    }
}

/// One step down a dot path: object members by name, array elements by a canonical
/// non-negative index (`"01"` or `"-1"` index nothing, as in JavaScript).
fn step<'v>(value: &'v Value, segment: &str) -> Option<&'v Value> {
    match value {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => canonical_index(segment).and_then(|i| items.get(i)),
        _ => None,
    }
}

pub(super) fn canonical_index(segment: &str) -> Option<usize> {
    let canonical = segment == "0" || (!segment.starts_with('0') && !segment.is_empty());
    if canonical && segment.bytes().all(|b| b.is_ascii_digit()) {
        segment.parse().ok()
    } else {
        None
    }
}

/// How a found value is compared.
#[derive(Debug, Clone)]
pub enum Matcher {
    Equals(Scalar),
    AnyOf(ScalarSet),
    Prefix(String),
    Regex(Regex),
    /// `true`: present and not null. `false`: missing or null.
    Exists(bool),
}

impl Matcher {
    pub fn matches(&self, found: Option<&Value>) -> bool {
        let found = found.filter(|v| !v.is_null());
        if let Matcher::Exists(wanted) = self {
            return found.is_some() == *wanted;
        }
        match found {
            None => false,
            // An array matches when one of its elements does; elements are not searched
            // recursively (objects and arrays inside arrays never match).
            Some(Value::Array(items)) => items.iter().any(|item| self.matches_scalar(item)),
            Some(value) => self.matches_scalar(value),
        }
    }

    fn matches_scalar(&self, value: &Value) -> bool {
        match self {
            Matcher::Equals(scalar) => scalar.equals(value),
            Matcher::AnyOf(set) => set.contains(value),
            Matcher::Prefix(prefix) => value
                .as_str()
                .is_some_and(|s| s.starts_with(prefix.as_str())),
            Matcher::Regex(regex) => value.as_str().is_some_and(|s| regex.is_match(s)),
            Matcher::Exists(_) => false,
        }
    }
}

/// A JSON scalar a condition compares against. Numbers compare by value as JavaScript's
/// `===` does (`3` equals `3.0`), so they are kept as `f64`.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    String(String),
    Number(f64),
    Bool(bool),
}

impl Scalar {
    /// The scalar for a JSON value, or `None` for null, arrays and objects.
    pub fn from_json(value: &Value) -> Option<Scalar> {
        match value {
            Value::String(s) => Some(Scalar::String(s.clone())),
            Value::Number(n) => n.as_f64().map(Scalar::Number),
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        }
    }

    fn equals(&self, value: &Value) -> bool {
        match (self, value) {
            (Scalar::String(a), Value::String(b)) => a == b,
            (Scalar::Number(a), Value::Number(b)) => b.as_f64() == Some(*a),
            (Scalar::Bool(a), Value::Bool(b)) => a == b,
            _ => false,
        }
    }
}

/// A set of scalars with hash lookup, so an `any_of` of 10,000 entries costs one probe.
#[derive(Debug, Clone, Default)]
pub struct ScalarSet {
    pub(super) strings: HashSet<String>,
    pub(super) numbers: HashSet<u64>,
    pub(super) bools: [bool; 2],
}

impl ScalarSet {
    pub fn insert(&mut self, scalar: Scalar) {
        match scalar {
            Scalar::String(s) => {
                self.strings.insert(s);
            }
            Scalar::Number(n) => {
                self.numbers.insert(number_key(n));
            }
            Scalar::Bool(b) => self.bools[usize::from(b)] = true,
        }
    }

    pub fn contains(&self, value: &Value) -> bool {
        match value {
            Value::String(s) => self.strings.contains(s.as_str()),
            Value::Number(n) => n
                .as_f64()
                .is_some_and(|n| self.numbers.contains(&number_key(n))),
            Value::Bool(b) => self.bools[usize::from(*b)],
            _ => false,
        }
    }
}

/// Hash key for a number compared by value: `-0.0` and `0.0` are equal in JavaScript.
pub(super) fn number_key(n: f64) -> u64 {
    if n == 0.0 { 0 } else { n.to_bits() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_paths_index_arrays_only_with_canonical_indexes() {
        let attributes = json!({"a": [10, 20], "m": {"0": "zero"}});
        let at = |s: &str| AttributePath::Dotted(s.split('.').map(String::from).collect());
        assert_eq!(at("a.1").resolve(&attributes), Some(&json!(20)));
        assert_eq!(at("a.01").resolve(&attributes), None);
        assert_eq!(at("a.-1").resolve(&attributes), None);
        assert_eq!(at("a.2").resolve(&attributes), None);
        assert_eq!(at("m.0").resolve(&attributes), Some(&json!("zero")));
        assert_eq!(at("a.99999999999999999999999").resolve(&attributes), None);
    }

    #[test]
    fn zero_and_negative_zero_are_one_number() {
        let mut set = ScalarSet::default();
        set.insert(Scalar::Number(-0.0));
        assert!(set.contains(&json!(0)));
        assert!(set.contains(&json!(0.0)));
        assert!(!set.contains(&json!("0")));
    }
}
