//! The rules document: parsed, validated and compiled in one pass. Any fault rejects the
//! whole document with the JSON path of the fault, so a document is either entirely in
//! force or not at all.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};

use regex::RegexBuilder;
use serde_json::{Map, Value};

use super::condition::{AttributePath, Condition, Matcher, Scalar, ScalarSet};
use super::index::Conditions;
use super::{QueueRules, RuleList, Rules};

/// The largest document accepted (SSM itself stops at 8 KB; a file may be larger).
pub const MAX_DOCUMENT_BYTES: usize = 4 << 20;
/// How deep `all` may nest.
const MAX_ALL_DEPTH: usize = 8;
/// Compiled-size ceiling for one `regex`, which also bounds its matching cost.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// The most one regex's matching cache (its lazy DFA) may grow to; past it, matching falls
/// back to slower engines that need no cache, still in linear time.
const REGEX_CACHE_BYTES: usize = 64 << 10;
/// What all of a document's regexes may take: their compiled forms, as regex-automata
/// reports them, plus each one's cache at full size. A Unicode class repeated (`\w{20}`) is
/// about 1.1 MiB; an ordinary pattern a few KiB.
const MAX_REGEX_BYTES: usize = 16 << 20;
/// The deepest attribute path: TaskAttributes are parsed to at most 128 levels of nesting,
/// so a longer path could never be present.
const MAX_PATH_SEGMENTS: usize = 128;
/// Distinct attribute paths over a document's conditions, each prefix counted (`a.b.c` is
/// three): the nodes of the index a decision walks.
const MAX_ATTRIBUTE_PATHS: usize = 10_000;

/// Conference instruction keys TaskRouter documents and a document may pass through.
/// `instruction` and `conference_record` are the decision's own and are refused.
pub const PASS_THROUGH_KEYS: &[&str] = &[
    "from",
    "to",
    "post_work_activity_sid",
    "timeout",
    "status_callback",
    "status_callback_method",
    "status_callback_event",
    "record",
    "muted",
    "beep",
    "beep_on_customer_entrance",
    "start_conference_on_enter",
    "end_conference_on_exit",
    "end_conference_on_customer_exit",
    "wait_url",
    "wait_method",
    "early_media",
    "max_participants",
    "jitter_buffer_size",
    "conference_status_callback",
    "conference_status_callback_method",
    "conference_status_callback_event",
    "conference_trim",
    "recording_channels",
    "recording_status_callback",
    "recording_status_callback_method",
    "conference_recording_status_callback",
    "conference_recording_status_callback_method",
    "region",
    "sip_auth_username",
    "sip_auth_password",
];

/// Why a document was rejected: the JSON path of the fault and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct RulesError {
    pub path: String,
    pub message: String,
}

impl RulesError {
    fn at(path: &str, message: impl Into<String>) -> RulesError {
        RulesError {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

type Result<T> = std::result::Result<T, RulesError>;

/// The document's JSON, within the size limit and with no repeated key.
pub(super) fn parse(text: &str) -> Result<Value> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(RulesError::at(
            "",
            format!(
                "document is {} bytes; the limit is {MAX_DOCUMENT_BYTES}",
                text.len()
            ),
        ));
    }
    let repeated = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let strict = Strict {
        path: String::new(),
        repeated: &repeated,
    };
    serde::de::DeserializeSeed::deserialize(strict, &mut deserializer)
        .and_then(|document| deserializer.end().map(|()| document))
        .map_err(|e| match repeated.take() {
            Some(path) => RulesError::at(
                &path,
                format!(
                    "appears twice in one object (line {} column {})",
                    e.line(),
                    e.column()
                ),
            ),
            None => RulesError::at("", format!("not valid JSON: {e}")),
        })
}

impl Rules {
    /// Parses, validates and compiles a rules document.
    pub fn from_json(text: &str) -> Result<Rules> {
        Rules::from_value(&parse(text)?)
    }

    pub fn from_value(document: &Value) -> Result<Rules> {
        let root = as_object(document, "", "the document must be a JSON object")?;
        let mut enabled = None;
        let mut rules = Rules::default();
        let mut budget = Budget::default();
        for (key, value) in root {
            let path = child(key, "");
            match key.as_str() {
                "enabled" => {
                    enabled = Some(value.as_bool().ok_or_else(|| {
                        RulesError::at(&path, "must be true or false (a JSON boolean)")
                    })?)
                }
                "exclude_queues" => rules.exclude_queues = queues(value, &path)?,
                "include_queues" => rules.include_queues = Some(queues(value, &path)?),
                "exclude_attributes" => {
                    rules.exclude_attributes =
                        Conditions::new(conditions(value, &path, &mut budget)?)
                }
                "include_attributes" => {
                    rules.include_attributes =
                        Some(Conditions::new(conditions(value, &path, &mut budget)?))
                }
                "voice_tasks" => {
                    let voice = conditions(value, &path, &mut budget)?;
                    if voice.is_empty() {
                        return Err(RulesError::at(
                            &path,
                            "an empty list would treat no task as a call",
                        ));
                    }
                    rules.voice_tasks = Some(Conditions::new(voice));
                }
                "instruction" => rules.instruction = instruction(value, &path)?,
                _ => {
                    return Err(unknown_key(
                        &path,
                        "enabled, exclude_queues, exclude_attributes, include_queues, include_attributes, instruction or voice_tasks",
                    ));
                }
            }
        }
        rules.enabled =
            enabled.ok_or_else(|| RulesError::at("enabled", "required (true or false)"))?;
        Ok(rules)
    }
}

fn queues(value: &Value, path: &str) -> Result<QueueRules> {
    let entries = as_array(value, path, "must be a list of queue SIDs or names")?;
    let mut queues = QueueRules::default();
    for (index, entry) in entries.iter().enumerate() {
        let entry_path = format!("{path}[{index}]");
        let name = entry
            .as_str()
            .ok_or_else(|| RulesError::at(&entry_path, "must be a string (a queue SID or name)"))?;
        if name.is_empty() {
            return Err(RulesError::at(
                &entry_path,
                "an empty queue name matches no queue",
            ));
        }
        let table = if is_queue_sid(name) {
            &mut queues.by_sid
        } else {
            &mut queues.by_name
        };
        // The first entry wins, so a reason names the entry an admin reads first.
        table.entry(name.to_owned()).or_insert(index);
    }
    Ok(queues)
}

/// `WQ` followed by 32 lowercase hex digits, as TaskRouter writes TaskQueue SIDs.
pub fn is_queue_sid(s: &str) -> bool {
    crate::sid::is_sid(s, "WQ")
}

/// What one document's conditions take in all, so that no document, however written, can
/// exhaust a small Lambda's memory when it is compiled: the regexes' memory and the distinct
/// attribute paths, over every list of conditions.
#[derive(Default)]
struct Budget {
    /// A hash of each distinct path prefix seen. A collision (one in 2^64) only lets a
    /// document have one path more than the limit.
    paths: std::collections::HashSet<u64, foldhash::fast::FixedState>,
    regex_bytes: usize,
}

impl Budget {
    fn path(&mut self, attribute_path: &AttributePath, path: &str) -> Result<()> {
        let segments = attribute_path.segments();
        let mut hasher = foldhash::fast::FixedState::default().build_hasher();
        for segment in &segments {
            hasher.write_usize(segment.len());
            hasher.write(segment.as_bytes());
            self.paths.insert(hasher.finish());
        }
        if self.paths.len() > MAX_ATTRIBUTE_PATHS {
            return Err(RulesError::at(
                path,
                format!(
                    "the document's conditions name more than {MAX_ATTRIBUTE_PATHS} distinct \
                     attribute paths (each prefix counted)"
                ),
            ));
        }
        Ok(())
    }

    fn regex(&mut self, pattern: &str, path: &str) -> Result<()> {
        // The same engine and limits as the regex kept for matching, built once more only
        // for its size: the `regex` crate does not report it.
        let size = regex_automata::meta::Regex::builder()
            .configure(regex_automata::meta::Config::new().nfa_size_limit(Some(REGEX_SIZE_LIMIT)))
            .build(pattern)
            .map_or(REGEX_SIZE_LIMIT, |regex| regex.memory_usage());
        self.regex_bytes += size + REGEX_CACHE_BYTES;
        if self.regex_bytes > MAX_REGEX_BYTES {
            return Err(RulesError::at(
                path,
                format!(
                    "the document's regexes need more than {} MiB with this one ({} KiB \
                     compiled, {} KiB of matching cache each); a Unicode class repeated \
                     (\\w{{20}}) is large, (?-u:\\w) is its small ASCII form",
                    MAX_REGEX_BYTES >> 20,
                    size.div_ceil(1024),
                    REGEX_CACHE_BYTES >> 10
                ),
            ));
        }
        Ok(())
    }
}

fn conditions(value: &Value, path: &str, budget: &mut Budget) -> Result<Vec<Condition>> {
    let items = as_array(value, path, "must be a list of conditions")?;
    items
        .iter()
        .enumerate()
        .map(|(index, item)| condition(item, &format!("{path}[{index}]"), 0, budget))
        .collect()
}

fn condition(value: &Value, path: &str, depth: usize, budget: &mut Budget) -> Result<Condition> {
    let fields = as_object(value, path, "a condition must be a JSON object")?;
    if let Some(inner) = fields.get("all") {
        if let Some(other) = fields.keys().find(|k| *k != "all") {
            return Err(RulesError::at(
                &child(other, path),
                "not allowed beside \"all\" (put it in a condition inside \"all\")",
            ));
        }
        let all_path = child("all", path);
        if depth >= MAX_ALL_DEPTH {
            return Err(RulesError::at(
                &all_path,
                format!("\"all\" nests deeper than {MAX_ALL_DEPTH} levels"),
            ));
        }
        let items = as_array(inner, &all_path, "must be a list of conditions")?;
        if items.is_empty() {
            return Err(RulesError::at(
                &all_path,
                "an empty list would match every task",
            ));
        }
        let inner = items
            .iter()
            .enumerate()
            .map(|(i, item)| condition(item, &format!("{all_path}[{i}]"), depth + 1, budget))
            .collect::<Result<Vec<_>>>()?;
        return Ok(Condition::All(inner));
    }

    let mut attribute_path = None;
    let mut matcher: Option<(&str, Matcher)> = None;
    for (key, field) in fields {
        let field_path = child(key, path);
        match key.as_str() {
            "key" | "pointer" => {
                if attribute_path.is_some() {
                    return Err(RulesError::at(
                        &field_path,
                        "a condition takes \"key\" or \"pointer\", not both",
                    ));
                }
                let parsed = if key == "key" {
                    dotted(field, &field_path)?
                } else {
                    pointer(field, &field_path)?
                };
                budget.path(&parsed, &field_path)?;
                attribute_path = Some(parsed);
            }
            "value" | "any_of" | "prefix" | "regex" | "exists" => {
                if let Some((first, _)) = matcher {
                    return Err(RulesError::at(
                        &field_path,
                        format!("a condition takes one matcher; it already has \"{first}\""),
                    ));
                }
                let compiled = compile_matcher(key, field, &field_path)?;
                if let Matcher::Regex(regex) = &compiled {
                    budget.regex(regex.as_str(), &field_path)?;
                }
                matcher = Some((key.as_str(), compiled));
            }
            _ => {
                return Err(unknown_key(
                    &field_path,
                    "key, pointer, value, any_of, prefix, regex, exists or all",
                ));
            }
        }
    }
    let path_value = attribute_path.ok_or_else(|| {
        RulesError::at(
            path,
            "a condition needs \"key\" (a dot path) or \"pointer\"",
        )
    })?;
    let (_, matcher) = matcher.ok_or_else(|| {
        RulesError::at(
            path,
            "a condition needs a matcher: value, any_of, prefix, regex or exists",
        )
    })?;
    Ok(Condition::Match {
        path: path_value,
        matcher,
    })
}

fn dotted(value: &Value, path: &str) -> Result<AttributePath> {
    let key = value.as_str().ok_or_else(|| {
        RulesError::at(
            path,
            "must be a string (a dot path such as \"conversations.topics\")",
        )
    })?;
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(RulesError::at(
            path,
            "empty path segment; use \"pointer\" for keys that are empty or contain dots",
        ));
    }
    not_too_deep(key.split('.').count(), path)?;
    Ok(AttributePath::Dotted(
        key.split('.').map(String::from).collect(),
    ))
}

fn pointer(value: &Value, path: &str) -> Result<AttributePath> {
    let pointer = value
        .as_str()
        .ok_or_else(|| RulesError::at(path, "must be a string (an RFC 6901 JSON pointer)"))?;
    if !pointer.starts_with('/') {
        return Err(RulesError::at(path, "a JSON pointer starts with \"/\""));
    }
    let mut escapes = pointer.split('~').skip(1);
    if escapes.any(|rest| !rest.starts_with(['0', '1'])) {
        return Err(RulesError::at(
            path,
            "\"~\" must be followed by 0 or 1 (RFC 6901)",
        ));
    }
    not_too_deep(pointer.split('/').count() - 1, path)?;
    Ok(AttributePath::Pointer(pointer.to_owned()))
}

/// Counted before the path is taken apart, so a long one costs nothing to refuse.
fn not_too_deep(segments: usize, path: &str) -> Result<()> {
    if segments > MAX_PATH_SEGMENTS {
        return Err(RulesError::at(
            path,
            format!(
                "a path of {segments} segments; TaskAttributes nest at most {MAX_PATH_SEGMENTS} deep"
            ),
        ));
    }
    Ok(())
}

fn compile_matcher(kind: &str, value: &Value, path: &str) -> Result<Matcher> {
    match kind {
        "value" => scalar(value, path).map(Matcher::Equals),
        "any_of" => {
            let items = as_array(
                value,
                path,
                "must be a list of strings, numbers or booleans",
            )?;
            if items.is_empty() {
                return Err(RulesError::at(path, "an empty list matches nothing"));
            }
            let mut set = ScalarSet::default();
            for (index, item) in items.iter().enumerate() {
                set.insert(scalar(item, &format!("{path}[{index}]"))?);
            }
            Ok(Matcher::AnyOf(set))
        }
        "prefix" => match value.as_str() {
            Some("") => Err(RulesError::at(
                path,
                "an empty prefix matches every string; use \"exists\"",
            )),
            Some(prefix) => Ok(Matcher::Prefix(prefix.to_owned())),
            None => Err(RulesError::at(path, "must be a string")),
        },
        "regex" => {
            let pattern = value
                .as_str()
                .ok_or_else(|| RulesError::at(path, "must be a string"))?;
            regex(pattern, path).map(Matcher::Regex)
        }
        "exists" => value
            .as_bool()
            .map(Matcher::Exists)
            .ok_or_else(|| RulesError::at(path, "must be true or false")),
        _ => Err(RulesError::at(path, "unknown matcher")),
    }
}

fn regex(pattern: &str, path: &str) -> Result<regex::Regex> {
    if pattern.is_empty() {
        return Err(RulesError::at(
            path,
            "an empty regex matches every string; use \"exists\"",
        ));
    }
    // The syntax parser names the fault in a few words ("unclosed group"); the compiler's
    // own message is a multi-line drawing.
    if let Err(e) = regex_syntax::ast::parse::Parser::new().parse(pattern) {
        return Err(RulesError::at(path, e.kind().to_string()));
    }
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_CACHE_BYTES)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => RulesError::at(
                path,
                format!("regex too large: compiled size over {limit} bytes"),
            ),
            other => RulesError::at(path, first_line(&other.to_string())),
        })
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == ' '))
        .unwrap_or("invalid regex")
        .to_owned()
}

fn scalar(value: &Value, path: &str) -> Result<Scalar> {
    Scalar::from_json(value).ok_or_else(|| {
        RulesError::at(
            path,
            "must be a string, number or boolean (null, objects and arrays never match)",
        )
    })
}

fn instruction(value: &Value, path: &str) -> Result<Map<String, Value>> {
    let fields = as_object(
        value,
        path,
        "must be an object of conference instruction keys",
    )?;
    for (key, field) in fields {
        let field_path = child(key, path);
        if key == "instruction" || key == "conference_record" {
            return Err(RulesError::at(
                &field_path,
                "is set by the decision and may not be passed through",
            ));
        }
        if !PASS_THROUGH_KEYS.contains(&key.as_str()) {
            return Err(unknown_key(
                &field_path,
                "a conference instruction key TaskRouter documents",
            ));
        }
        let allowed = match field {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => true,
            Value::Array(items) => key.ends_with("_event") && items.iter().all(Value::is_string),
            Value::Null | Value::Object(_) => false,
        };
        if !allowed {
            return Err(RulesError::at(
                &field_path,
                "must be a string, number or boolean",
            ));
        }
    }
    Ok(fields.clone())
}

fn as_object<'v>(value: &'v Value, path: &str, message: &str) -> Result<&'v Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| RulesError::at(path, message))
}

fn as_array<'v>(value: &'v Value, path: &str, message: &str) -> Result<&'v Vec<Value>> {
    value
        .as_array()
        .ok_or_else(|| RulesError::at(path, message))
}

fn unknown_key(path: &str, expected: &str) -> RulesError {
    RulesError::at(path, format!("unknown key (expected {expected})"))
}

/// The path of a member: `parent.key`, or `parent["odd key"]` when the key is not a plain
/// word (so a hostile key cannot forge a path or break a log line).
fn child(key: &str, parent: &str) -> String {
    let plain = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
    let mut path = parent.to_owned();
    if plain {
        if !parent.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        let shown: String = key.chars().take(64).collect();
        let ellipsis = if shown.len() < key.len() { "..." } else { "" };
        let _ = write!(path, "[{}{ellipsis}]", Value::String(shown));
    }
    path
}

impl RuleList {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleList::ExcludeQueues => "exclude_queues",
            RuleList::ExcludeAttributes => "exclude_attributes",
            RuleList::IncludeQueues => "include_queues",
            RuleList::IncludeAttributes => "include_attributes",
        }
    }
}

/// Reads JSON whose objects have no repeated key, keeping the JSON path of each value so a
/// repeated key can be named. A repeated key in a rules document is a mistake (two
/// `exclude_attributes` lists, one silently dropped), so it is refused.
struct Strict<'a> {
    path: String,
    /// Set to the repeated key's path when one is found.
    repeated: &'a RefCell<Option<String>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict {
            path: format!("{}[{}]", self.path, items.len()),
            repeated: self.repeated,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = child(&key, &self.path);
            if object.contains_key(&key) {
                *self.repeated.borrow_mut() = Some(path);
                return Err(serde::de::Error::custom(
                    "a key appears twice in one object",
                ));
            }
            let value = map.next_value_seed(Strict {
                path,
                repeated: self.repeated,
            })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}
