//! A list of conditions compiled into a trie of attribute paths, so that finding the first
//! condition that matches costs one walk over the parts of the TaskAttributes the rules
//! mention, however many conditions there are.
//!
//! Each trie node holds the tests of the conditions on its path: `value` and `any_of`
//! merged into one hash lookup (scalar to the lowest condition index), `prefix` as one
//! lookup per distinct prefix length, `exists: true`, and regexes in document order (one
//! anchored at the start runs only on strings that begin with one of its literal prefixes,
//! when it has a few). The walk keeps the lowest matching index, so the answer is the first
//! match in document order, as a scan of the list would find it.
//!
//! At an object, the walk goes through its members and finds each one's trie child by a
//! table on the name's length and three of its bytes, confirmed by one comparison, unless the
//! object is much larger than the node: looking a name up in the object itself costs a
//! SipHash (serde_json's `preserve_order` map), several times that.
//!
//! `exists: false` (which matches where there is nothing to walk) and the conditions inside
//! `all` cannot lower that index alone. The walk sets a bit for each of them that holds in a
//! small bit set on the stack: a node's bit when it reaches the node with a value that is not
//! null (for `exists`), a condition's own bit when its matcher accepts the value there (for
//! the others). After the walk they are decided from the bits, in document order, only while
//! they could still come first. A list with more of them than the bit set holds has the rest
//! resolved by path, one by one, as a scan would.

use std::ops::Range;

use regex::Regex;
use regex_syntax::hir::Look;
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use serde_json::Value;

use super::HashMap;
use super::condition::{AttributePath, Condition, Matcher, Scalar, canonical_index, number_key};

/// Lists this short are scanned in order: as fast as the walk, and no slower for a first
/// match near the top (the default `voice_tasks`, the template's example).
const SCAN_AT_MOST: usize = 4;

/// How many bits a decision has for `exists: false` and the conditions inside `all`: a
/// fixed array on the stack, so that a decision allocates nothing. Conditions beyond it are
/// resolved by path after the walk, as a scan would.
const TRACKED_BITS: usize = 256;

/// At an object, the walk looks each of its members up among the trie node's children
/// ([`Node::child`]: a member that is no child mostly costs a look at three of its bytes)
/// unless the object has more than this many members per child; then it looks each child up
/// in the object instead, which costs a SipHash of the name (serde_json's `preserve_order`
/// map), measured at about 17 ns against 4 ns for a full hash of a short name.
const MEMBERS_PER_CHILD: usize = 8;

/// Conditions in document order, and the same conditions indexed by path.
#[derive(Debug, Default)]
pub struct Conditions {
    list: Vec<Condition>,
    root: Node,
    /// The conditions decided after the walk, from the bits it set, ascending by index.
    after: Vec<(usize, After)>,
    /// The bits each [`After::Bits`] needs: (bit, whether it must be set).
    wanted: Vec<(u16, bool)>,
}

#[derive(Debug)]
enum After {
    /// Matches when each bit of `wanted[range]` is as wanted.
    Bits(Range<usize>),
    /// Out of bits: resolved by path, as a scan would.
    Resolve,
}

impl Conditions {
    pub fn new(list: Vec<Condition>) -> Conditions {
        let mut root = Node::default();
        let mut after = Vec::new();
        let mut wanted = Vec::new();
        let mut next_bit = 0;
        for (index, condition) in list.iter().enumerate() {
            let mut leaves = Vec::new();
            match condition {
                Condition::Match {
                    path,
                    matcher: matcher @ Matcher::Exists(false),
                } => leaves.push((path, matcher)),
                Condition::Match { path, matcher } => {
                    root.at(path).add(index, matcher);
                    continue;
                }
                Condition::All(inner) => inner.iter().for_each(|c| c.leaves(&mut leaves)),
            }
            // Each leaf takes at most one new bit; a condition gets bits for all or none.
            if next_bit + leaves.len() > TRACKED_BITS {
                after.push((index, After::Resolve));
                continue;
            }
            let start = wanted.len();
            for (path, matcher) in leaves {
                let tests = root.at(path);
                wanted.push(match matcher {
                    // Present and not null is the walk reaching the node.
                    Matcher::Exists(exists) => (tests.reach_bit(&mut next_bit), *exists),
                    _ => {
                        let bit = take(&mut next_bit);
                        tests.inner.push((bit, index, matcher.clone()));
                        (bit, true)
                    }
                });
            }
            after.push((index, After::Bits(start..wanted.len())));
        }
        root.finish();
        Conditions {
            list,
            root,
            after,
            wanted,
        }
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
        let mut state = State {
            first: usize::MAX,
            bits: [0; TRACKED_BITS / 64],
        };
        if !attributes.is_null() {
            self.root.walk(attributes, &mut state);
        }
        for (index, after) in &self.after {
            if *index >= state.first {
                break;
            }
            let matched = match after {
                After::Bits(range) => self.wanted[range.clone()]
                    .iter()
                    .all(|&(bit, set)| state.bit(bit) == set),
                After::Resolve => self.list[*index].matches(attributes),
            };
            if matched {
                state.first = *index;
                break;
            }
        }
        (state.first != usize::MAX).then_some(state.first)
    }
}

fn take(next_bit: &mut usize) -> u16 {
    let bit = *next_bit as u16;
    *next_bit += 1;
    bit
}

impl Condition {
    /// The conditions of an `all`, nested ones included: it matches when they all do.
    fn leaves<'c>(&'c self, out: &mut Vec<(&'c AttributePath, &'c Matcher)>) {
        match self {
            Condition::Match { path, matcher } => out.push((path, matcher)),
            Condition::All(inner) => inner.iter().for_each(|c| c.leaves(out)),
        }
    }
}

/// What one decision's walk has found so far.
struct State {
    /// The lowest index of a condition that matches.
    first: usize,
    /// Which `exists` and `all` leaves hold, by the bits [`Conditions::new`] gave them.
    bits: [u64; TRACKED_BITS / 64],
}

impl State {
    fn set(&mut self, bit: u16) {
        self.bits[usize::from(bit / 64)] |= 1 << (bit % 64);
    }

    fn bit(&self, bit: u16) -> bool {
        self.bits[usize::from(bit / 64)] & (1 << (bit % 64)) != 0
    }
}

#[derive(Debug, Default)]
struct Node {
    /// With their segments, in the order the conditions first name them.
    children: Vec<(Box<str>, Node)>,
    /// Each child's position in `children`, by segment.
    positions: HashMap<Box<str>, usize>,
    /// A child's position by the [`slot`] of its segment, [`NO_CHILD`] or [`SHARED`]: most
    /// members that are no child cost a look at three bytes, and most that are one a single
    /// comparison, rather than a hash of the whole name. Empty without children.
    slots: Box<[u16]>,
    /// The children whose segment is a canonical array index, for walking into arrays:
    /// (array index, position in `children`).
    elements: Vec<(usize, usize)>,
    tests: Option<Box<Tests>>,
}

/// The length of a node's `slots`. The tests use a few, so that names share slots.
const SLOTS: usize = if cfg!(test) { 4 } else { 256 };
/// In `slots`: no child's segment has this slot.
const NO_CHILD: u16 = u16::MAX;
/// In `slots`: more than one child's segment has this slot; ask `positions`.
const SHARED: u16 = u16::MAX - 1;

/// A cheap hash of a member name from its length and its first, middle and last bytes.
fn slot(name: &str) -> usize {
    let bytes = name.as_bytes();
    let at = |i: usize| bytes.get(i).copied().map_or(0, u32::from);
    let length = bytes.len();
    let mixed =
        at(0) | at(length / 2) << 8 | at(length.wrapping_sub(1)) << 16 | (length as u32) << 24;
    (mixed.wrapping_mul(0x9E37_79B9) >> 24) as usize % SLOTS
}

impl Node {
    /// The tests of the node at `path`, made on the way if need be.
    fn at(&mut self, path: &AttributePath) -> &mut Tests {
        let mut node = self;
        for segment in path.segments() {
            let position = match node.positions.get(segment.as_str()) {
                Some(&position) => position,
                None => {
                    let position = node.children.len();
                    node.positions.insert(segment.as_str().into(), position);
                    node.children.push((segment.into(), Node::default()));
                    position
                }
            };
            node = &mut node.children[position].1;
        }
        node.tests.get_or_insert_with(Box::default)
    }

    /// Makes the tables the walk uses, once every condition is in.
    fn finish(&mut self) {
        self.elements = (self.children.iter().enumerate())
            .filter_map(|(position, (segment, _))| canonical_index(segment).map(|i| (i, position)))
            .collect();
        if !self.children.is_empty() && self.children.len() < usize::from(SHARED) {
            let mut slots = vec![NO_CHILD; SLOTS];
            for (position, (segment, _)) in self.children.iter().enumerate() {
                let at = &mut slots[slot(segment)];
                *at = if *at == NO_CHILD {
                    position as u16
                } else {
                    SHARED
                };
            }
            self.slots = slots.into();
        }
        for (_, child) in &mut self.children {
            child.finish();
        }
    }

    /// The child whose segment is `name`.
    fn child(&self, name: &str) -> Option<&Node> {
        match self.slots.get(slot(name)).copied() {
            Some(NO_CHILD) => None,
            Some(SHARED) | None => self.positions.get(name).map(|&p| &self.children[p].1),
            Some(position) => (self.children.get(usize::from(position)))
                .filter(|(segment, _)| **segment == *name)
                .map(|(_, child)| child),
        }
    }

    /// Runs the tests at and below this node on `value`, present and not null.
    fn walk(&self, value: &Value, state: &mut State) {
        if let Some(tests) = &self.tests {
            tests.run(value, state);
        }
        if self.children.is_empty() {
            return;
        }
        match value {
            Value::Object(members) if members.len() <= self.children.len() * MEMBERS_PER_CHILD => {
                for (name, member) in members {
                    if let Some(child) = self.child(name) {
                        child.visit(member, state);
                    }
                }
            }
            Value::Object(members) => {
                for (segment, child) in &self.children {
                    if let Some(member) = members.get(&**segment) {
                        child.visit(member, state);
                    }
                }
            }
            Value::Array(items) => {
                for &(index, position) in &self.elements {
                    if let Some(item) = items.get(index) {
                        self.children[position].1.visit(item, state);
                    }
                }
            }
            _ => {}
        }
    }

    /// Missing and null match nothing but `exists: false`, which the walk not reaching a
    /// node decides.
    fn visit(&self, value: &Value, state: &mut State) {
        if !value.is_null() {
            self.walk(value, state);
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
    regexes: Vec<(usize, Regex, Option<Starts>)>,
    /// Set when the walk reaches this node: `exists` of `all` and `exists: false`.
    reach: Option<u16>,
    /// The other conditions of `all`s on this path: (bit, the `all`'s index, matcher).
    inner: Vec<(u16, usize, Matcher)>,
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
            Matcher::Regex(regex) => {
                self.regexes
                    .push((index, regex.clone(), Starts::of(regex.as_str())));
            }
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

    /// The node's bit for the walk reaching it, given on first use.
    fn reach_bit(&mut self, next_bit: &mut usize) -> u16 {
        *self.reach.get_or_insert_with(|| take(next_bit))
    }

    /// `value` is present and not null.
    fn run(&self, value: &Value, state: &mut State) {
        if let Some(bit) = self.reach {
            state.set(bit);
        }
        for (bit, index, matcher) in &self.inner {
            // Once a condition before the `all` matched, the `all` cannot come first.
            if *index < state.first && matcher.matches(Some(value)) {
                state.set(*bit);
            }
        }
        let first = &mut state.first;
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
        for (index, regex, starts) in &self.regexes {
            if *index >= *first {
                break;
            }
            if starts.as_ref().is_none_or(|starts| starts.admit(s)) && regex.is_match(s) {
                *first = *index;
                break;
            }
        }
    }
}

/// The strings every match of a regex anchored at the start of the text begins with. Running
/// a regex costs about 10 ns even when it fails on the first character; most strings are
/// turned away by these in a few.
#[derive(Debug)]
struct Starts(Vec<Box<[u8]>>);

/// Past this many, checking them could cost as much as the regex.
const MAX_STARTS: usize = 16;

impl Starts {
    /// `None` when the regex is not anchored at the start or its prefixes are not a short
    /// finite list.
    fn of(pattern: &str) -> Option<Starts> {
        let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
        if !hir.properties().look_set_prefix().contains(Look::Start) {
            return None;
        }
        let prefixes = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
        let literals = prefixes.literals().filter(|l| l.len() <= MAX_STARTS)?;
        Some(Starts(
            literals.iter().map(|l| l.as_bytes().into()).collect(),
        ))
    }

    fn admit(&self, s: &str) -> bool {
        self.0.iter().any(|start| s.as_bytes().starts_with(start))
    }
}

impl AttributePath {
    /// The path as member names or array indexes, one per step (a pointer unescaped).
    pub(super) fn segments(&self) -> Vec<String> {
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
            prop::sample::select(vec![
                "^v$",
                "w",
                "^\\+44",
                "é$",
                "^(v|\\+4)",
                "(?i)^VÉ",
                "(?m)^w",
                "^$",
                "^[+é]"
            ])
            .prop_map(|r| ("regex", json!(r))),
            any::<bool>().prop_map(|b| ("exists", json!(b))),
        ];
        let single = (path, matcher).prop_map(|((pk, p), (mk, m))| json!({pk: p, mk: m}));
        let all = |inner: BoxedStrategy<Value>| {
            prop::collection::vec(inner, 1..4).prop_map(|all| json!({"all": all}))
        };
        let nested = prop_oneof![3 => single.clone(), 1 => all(single.clone().boxed())];
        prop_oneof![
            4 => single.clone(),
            2 => all(single.boxed()),
            1 => all(nested.boxed()),
        ]
    }

    /// Conditions that never match and take every bit of a decision, so that the
    /// conditions after them are resolved by path.
    fn bits_taken() -> Vec<Value> {
        (0..super::TRACKED_BITS)
            .map(|i| json!({"all": [{"key": format!("zz{i}"), "exists": true}]}))
            .collect()
    }

    /// A regex skipped by its literal prefixes is one that could not have matched.
    #[test]
    fn regexes_are_skipped_only_where_they_cannot_match() {
        let patterns = [
            "^\\+1(900|976)",
            "é$",
            "w",
            "(?m)^w",
            "(?i)^VÉ",
            "^(pci|payments?)$",
            "^",
            "^[a-c]x",
            "^a|b",
        ];
        let strings = [
            "", "+1900", "+19001", "+1800", "vé", "xw", "a\nw", "VÉ", "vÉ", "payment", "payments",
            "pci", "bx", "a", "cb",
        ];
        for pattern in patterns {
            // Long enough to be walked, not scanned.
            let mut conditions = vec![json!({"key": "s", "regex": pattern})];
            conditions
                .extend((0..super::SCAN_AT_MOST).map(|_| json!({"key": "z", "exists": true})));
            let rules =
                Rules::from_value(&json!({"enabled": true, "exclude_attributes": conditions}))
                    .expect("a valid document");
            for string in strings {
                let attributes = json!({"s": string});
                let matches = regex::Regex::new(pattern).unwrap().is_match(string);
                assert_eq!(
                    rules.exclude_attributes.walk(&attributes),
                    matches.then_some(0),
                    "{pattern} on {string:?}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The walk finds the condition a scan in document order finds.
        #[test]
        fn the_walk_finds_the_first_match_a_scan_finds(
            conditions in prop::collection::vec(condition(), 0..12),
            attributes in attributes(),
            out_of_bits in prop::bool::weighted(0.2),
        ) {
            let conditions = match out_of_bits {
                true => bits_taken().into_iter().chain(conditions).collect(),
                false => conditions,
            };
            let rules = Rules::from_value(&json!({"enabled": true, "exclude_attributes": conditions}))
                .expect("a valid document");
            let list = &rules.exclude_attributes;
            let scanned = list.as_slice().iter().position(|c| c.matches(&attributes));
            prop_assert_eq!(list.walk(&attributes), scanned);
            prop_assert_eq!(list.first_match(&attributes), scanned);
        }
    }
}
