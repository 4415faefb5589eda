//! A list of conditions compiled into a trie of attribute paths, so that finding the first
//! condition that matches costs one walk over the parts of the TaskAttributes the rules
//! mention, however many conditions there are.
//!
//! Each trie node holds the tests of the conditions on its path: `value` and `any_of`
//! merged into one hash lookup (scalar to the lowest condition index), `prefix` as one
//! lookup per distinct prefix length, `exists: true`, and regexes in document order. The
//! walk keeps the lowest matching index, so the answer is the first match in document
//! order, as a scan of the list would find it. Conditions the walk cannot see (`all`, and
//! `exists: false`, which matches where there is nothing to walk) are tried afterwards, in
//! order, only while they could still come first.

use regex::Regex;
use serde_json::Value;

use super::HashMap;
use super::condition::{AttributePath, Condition, Matcher, Scalar, canonical_index, number_key};

/// Lists this short are scanned in order: as fast as the walk, and no slower for a first
/// match near the top (the default `voice_tasks`, the template's example).
const SCAN_AT_MOST: usize = 4;

/// Conditions in document order, and the same conditions indexed by path.
#[derive(Debug, Default)]
pub struct Conditions {
    list: Vec<Condition>,
    root: Node,
    /// Indexes of the conditions the walk cannot decide, ascending.
    others: Vec<usize>,
}

impl Conditions {
    pub fn new(list: Vec<Condition>) -> Conditions {
        let mut root = Node::default();
        let mut others = Vec::new();
        for (index, condition) in list.iter().enumerate() {
            match condition {
                Condition::Match {
                    matcher: Matcher::Exists(false),
                    ..
                } => others.push(index),
                Condition::Match { path, matcher } => {
                    let mut node = &mut root;
                    for segment in path.segments() {
                        node = node.children.entry(segment.into()).or_default();
                    }
                    node.tests
                        .get_or_insert_with(Box::default)
                        .add(index, matcher);
                }
                Condition::All(_) => others.push(index),
            }
        }
        root.index_elements();
        Conditions { list, root, others }
    }

    /// The conditions, in document order.
    pub fn as_slice(&self) -> &[Condition] {
        &self.list
    }

    /// The index of the first condition that matches, in document order.
    pub fn first_match(&self, attributes: &Value) -> Option<usize> {
        if self.list.len() <= SCAN_AT_MOST {
            return self.list.iter().position(|c| c.matches(attributes));
        }
        self.walk(attributes)
    }

    /// [`Conditions::first_match`] through the index, whatever the list's length.
    fn walk(&self, attributes: &Value) -> Option<usize> {
        let mut first = usize::MAX;
        self.root.walk(attributes, &mut first);
        for &index in &self.others {
            if index >= first {
                break;
            }
            if self.list.get(index).is_some_and(|c| c.matches(attributes)) {
                first = index;
                break;
            }
        }
        (first != usize::MAX).then_some(first)
    }
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    /// The children whose segment is a canonical array index, for walking into arrays.
    elements: Vec<(usize, Box<str>)>,
    tests: Option<Box<Tests>>,
}

impl Node {
    fn index_elements(&mut self) {
        self.elements = self
            .children
            .keys()
            .filter_map(|segment| canonical_index(segment).map(|i| (i, segment.clone())))
            .collect();
        for child in self.children.values_mut() {
            child.index_elements();
        }
    }

    /// Lowers `first` to the lowest index of a condition that matches at or below this node.
    fn walk(&self, value: &Value, first: &mut usize) {
        if value.is_null() {
            return;
        }
        if let Some(tests) = &self.tests {
            tests.run(value, first);
        }
        match value {
            // Whichever side is smaller drives the walk: the rules' keys or the object's.
            Value::Object(members) if self.children.len() <= members.len() => {
                for (segment, child) in &self.children {
                    if let Some(member) = members.get(&**segment) {
                        child.walk(member, first);
                    }
                }
            }
            Value::Object(members) if !self.children.is_empty() => {
                for (key, member) in members {
                    if let Some(child) = self.children.get(key.as_str()) {
                        child.walk(member, first);
                    }
                }
            }
            Value::Array(items) => {
                for (index, segment) in &self.elements {
                    if let (Some(item), Some(child)) =
                        (items.get(*index), self.children.get(segment))
                    {
                        child.walk(item, first);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The tests of every condition on one path, each remembering its lowest condition index.
#[derive(Debug, Default)]
struct Tests {
    exists: Option<usize>,
    strings: HashMap<Box<str>, usize>,
    numbers: HashMap<u64, usize>,
    bools: [Option<usize>; 2],
    prefixes: HashMap<Box<str>, usize>,
    /// The distinct lengths of `prefixes`, ascending.
    prefix_lengths: Vec<usize>,
    /// In document order.
    regexes: Vec<(usize, Regex)>,
}

impl Tests {
    /// Adds one condition. Conditions come in document order, so the first entry for a
    /// value is the lowest index and is kept.
    fn add(&mut self, index: usize, matcher: &Matcher) {
        match matcher {
            Matcher::Equals(scalar) => self.add_scalar(index, scalar),
            Matcher::AnyOf(set) => {
                for s in &set.strings {
                    self.strings.entry(s.as_str().into()).or_insert(index);
                }
                for &key in &set.numbers {
                    self.numbers.entry(key).or_insert(index);
                }
                for (b, _) in set.bools.iter().enumerate().filter(|(_, in_set)| **in_set) {
                    self.bools[b].get_or_insert(index);
                }
            }
            Matcher::Prefix(prefix) => {
                self.prefixes.entry(prefix.as_str().into()).or_insert(index);
                if let Err(at) = self.prefix_lengths.binary_search(&prefix.len()) {
                    self.prefix_lengths.insert(at, prefix.len());
                }
            }
            Matcher::Regex(regex) => self.regexes.push((index, regex.clone())),
            Matcher::Exists(true) => {
                self.exists.get_or_insert(index);
            }
            // Matches only where the walk finds nothing; tried after it.
            Matcher::Exists(false) => {}
        }
    }

    fn add_scalar(&mut self, index: usize, scalar: &Scalar) {
        match scalar {
            Scalar::String(s) => {
                self.strings.entry(s.as_str().into()).or_insert(index);
            }
            Scalar::Number(n) => {
                self.numbers.entry(number_key(*n)).or_insert(index);
            }
            Scalar::Bool(b) => {
                self.bools[usize::from(*b)].get_or_insert(index);
            }
        }
    }

    /// `value` is present and not null.
    fn run(&self, value: &Value, first: &mut usize) {
        if let Some(index) = self.exists {
            *first = (*first).min(index);
        }
        match value {
            // An array matches when one of its elements does (not recursively).
            Value::Array(items) => items.iter().for_each(|item| self.run_scalar(item, first)),
            _ => self.run_scalar(value, first),
        }
    }

    fn run_scalar(&self, value: &Value, first: &mut usize) {
        let found = match value {
            Value::String(s) => {
                self.run_string(s, first);
                self.strings.get(s.as_str())
            }
            Value::Number(n) => n.as_f64().and_then(|n| self.numbers.get(&number_key(n))),
            Value::Bool(b) => self.bools[usize::from(*b)].as_ref(),
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        };
        if let Some(&index) = found {
            *first = (*first).min(index);
        }
    }

    fn run_string(&self, s: &str, first: &mut usize) {
        for &length in &self.prefix_lengths {
            if length > s.len() {
                break;
            }
            // `None` when the length splits a character: then no prefix of it matches.
            if let Some(&index) = s.get(..length).and_then(|head| self.prefixes.get(head)) {
                *first = (*first).min(index);
            }
        }
        for (index, regex) in &self.regexes {
            if *index >= *first {
                break;
            }
            if regex.is_match(s) {
                *first = *index;
                break;
            }
        }
    }
}

impl AttributePath {
    /// The path as member names or array indexes, one per step (a pointer unescaped).
    fn segments(&self) -> Vec<String> {
        match self {
            AttributePath::Dotted(segments) => segments.clone(),
            AttributePath::Pointer(pointer) => pointer
                .split('/')
                .skip(1)
                .map(|token| token.replace("~1", "/").replace("~0", "~"))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use crate::rules::Rules;

    const KEYS: &[&str] = &["a", "b", "c", "0", "1", "a.b", "a/b", "~", ""];
    const PATHS: &[&str] = &["a", "b", "a.b", "a.0", "a.1", "a.01", "b.c.a", "0", "c.0.b"];
    const POINTERS: &[&str] = &["/a", "/a/b", "/a~1b", "/", "/a/0", "/~0", "/a.b", "/b/c"];

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            prop::sample::select(vec!["", "v", "w", "+44", "+4412", "é", "vé"])
                .prop_map(Value::from),
            prop::sample::select(vec![0.0, -0.0, 1.0, 1.5]).prop_map(Value::from),
            Just(json!(1)),
            any::<bool>().prop_map(Value::from),
        ]
    }

    fn attributes() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![scalar(), Just(Value::Null)];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS), inner), 0..5).prop_map(
                    |members| {
                        Value::Object(
                            members
                                .into_iter()
                                .map(|(k, v)| (k.to_owned(), v))
                                .collect(),
                        )
                    }
                ),
            ]
        })
    }

    fn condition() -> impl Strategy<Value = Value> {
        let path = prop_oneof![
            prop::sample::select(PATHS).prop_map(|p| ("key", p)),
            prop::sample::select(POINTERS).prop_map(|p| ("pointer", p)),
        ];
        let matcher = prop_oneof![
            scalar().prop_map(|v| ("value", v)),
            prop::collection::vec(scalar(), 1..4).prop_map(|v| ("any_of", Value::Array(v))),
            prop::sample::select(vec!["v", "+4", "+44", "vé", "é"])
                .prop_map(|p| ("prefix", json!(p))),
            prop::sample::select(vec!["^v$", "w", "^\\+44", "é$"])
                .prop_map(|r| ("regex", json!(r))),
            any::<bool>().prop_map(|b| ("exists", json!(b))),
        ];
        let single = (path, matcher).prop_map(|((pk, p), (mk, m))| json!({pk: p, mk: m}));
        prop_oneof![
            4 => single.clone(),
            1 => prop::collection::vec(single, 1..3).prop_map(|all| json!({"all": all})),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The walk finds the condition a scan in document order finds.
        #[test]
        fn the_walk_finds_the_first_match_a_scan_finds(
            conditions in prop::collection::vec(condition(), 0..12),
            attributes in attributes(),
        ) {
            let rules = Rules::from_value(&json!({"enabled": true, "exclude_attributes": conditions}))
                .expect("a valid document");
            let list = &rules.exclude_attributes;
            let scanned = list.as_slice().iter().position(|c| c.matches(&attributes));
            prop_assert_eq!(list.walk(&attributes), scanned);
            prop_assert_eq!(list.first_match(&attributes), scanned);
        }
    }
}
