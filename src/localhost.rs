//! Localhost mode: flag definitions from a local file, segments from a directory.
//!
//! Formats, chosen by the file's extension (SPLIT_SEMANTICS.md §8):
//! - `.json`: a splitChanges document, spec 1.3 (`ff`/`rbs`) or legacy (`splits`), sanitized
//!   as the official SDKs do in localhost mode: a missing traffic type becomes `user`, a missing
//!   default treatment `control`, a negative change number 0, an unknown status `ACTIVE`,
//!   `algo` is forced to 2 (murmur3), and when the last rule is not a ROLLOUT on `ALL_KEYS`
//!   a catch-all rule giving `off` (label `default rule`) is appended. Seeds are kept as
//!   written (the Go SDK randomises a zero seed; a fixed seed keeps results reproducible).
//!   To evaluate definitions exactly as written, build a [`crate::Snapshot`] and hand it to
//!   [`crate::ClientBuilder::snapshot`].
//! - `.yaml` / `.yml`: a list of single-key maps,
//!   `- flag_name: {treatment: "on", keys: "key" | ["k1", "k2"], config: "{...}"}`. Entries
//!   with `keys` become whitelist rules (label `whitelisted`), in file order, ahead of the
//!   entries without keys, which become catch-all rules (label `default rule`); the first
//!   matching rule wins. `config` is the configuration of that entry's treatment.
//! - anything else: the legacy format, one `flag_name treatment` per line; `#` starts a
//!   comment line; blank lines are ignored; a later line for the same flag wins.
//!
//! Synthesised flags (YAML and legacy) have traffic type `user`, default treatment
//! `control`, traffic allocation 100, murmur3 bucketing and change number 0.
//!
//! Segments: every `*.json` file of the segment directory is a segmentChanges document.
//!
//! Every file is read as UTF-8, without a leading byte-order mark (some editors write one);
//! a UTF-16 file is refused naming its encoding.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::definitions::{FeatureFlag, SegmentChanges, SplitChanges};
use crate::error::Error;
use crate::text::without_line;

/// The format of a localhost file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Yaml,
    Legacy,
}

impl Format {
    pub(crate) fn of(path: &Path) -> Format {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("json") => Format::Json,
            Some("yaml" | "yml") => Format::Yaml,
            _ => Format::Legacy,
        }
    }
}

/// The UTF-8 byte-order mark some editors (Notepad, Excel exports) put at the start of a
/// file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The text of a localhost file (flags or segment), without a leading UTF-8 byte-order
/// mark: read as part of the text, it would rename the first flag of a legacy file and
/// make a JSON file invalid.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Parse`] naming the line when it is
/// not UTF-8 (UTF-16, which a byte-order mark tells, is named as such).
fn read(path: &Path) -> Result<String, Error> {
    let mut bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let not_utf8 = |line: Option<usize>, message: String| Error::Parse {
        origin: path.display().to_string(),
        line,
        message,
    };
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return Err(not_utf8(
            None,
            "the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8".into(),
        ));
    }
    if bytes.starts_with(UTF8_BOM) {
        bytes.drain(..UTF8_BOM.len());
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let valid = &bytes[..at];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        not_utf8(
            Some(line),
            format!(
                "not UTF-8: byte {:#04x} (column {}); save the file as UTF-8",
                bytes.get(at).copied().unwrap_or_default(),
                at - line_start + 1
            ),
        )
    })
}

/// Reads and parses a flags file. Returns the document and the problems of definitions that
/// were skipped or degraded.
pub(crate) fn load_flags(path: &Path) -> Result<(SplitChanges, Vec<Error>), Error> {
    let text = read(path)?;
    parse_flags(&text, Format::of(path), &path.display().to_string())
}

/// Parses the text of a flags file in `format`; `origin` names it in errors.
pub(crate) fn parse_flags(
    text: &str,
    format: Format,
    origin: &str,
) -> Result<(SplitChanges, Vec<Error>), Error> {
    match format {
        Format::Json => {
            let (mut changes, problems) = SplitChanges::parse(text, origin)?;
            for f in &mut changes.flags.d {
                sanitize(f);
            }
            Ok((changes, problems))
        }
        Format::Yaml => Ok((synthesized(parse_yaml(text, origin)?), Vec::new())),
        Format::Legacy => Ok((synthesized(parse_legacy(text, origin)?), Vec::new())),
    }
}

fn sanitize(f: &mut FeatureFlag) {
    if f.traffic_type_name.as_deref().is_none_or(str::is_empty) {
        f.traffic_type_name = Some("user".into());
    }
    if f.default_treatment.as_deref().is_none_or(str::is_empty) {
        f.default_treatment = Some("control".into());
    }
    if f.change_number.is_some_and(|c| c < 0) {
        f.change_number = Some(0);
    }
    if !matches!(f.status.as_deref(), Some("ACTIVE" | "ARCHIVED")) {
        f.status = Some("ACTIVE".into());
    }
    f.algo = Some(2);
    let conditions = f.conditions.get_or_insert_with(Vec::new);
    let ends_with_catch_all = conditions.last().is_some_and(|c| {
        c.condition_type.as_deref() == Some("ROLLOUT")
            && c.matcher_group
                .as_ref()
                .and_then(|g| g.matchers.as_deref())
                .is_some_and(|m| m.len() == 1 && m[0].matcher_type == "ALL_KEYS")
    });
    if !ends_with_catch_all {
        let rule = json!({"conditionType": "ROLLOUT",
            "matcherGroup": {"combiner": "AND", "matchers": [{
                "keySelector": null, "matcherType": "ALL_KEYS", "negate": false}]},
            "partitions": [{"treatment": "off", "size": 100}], "label": "default rule"});
        if let Ok(c) = serde_json::from_value(rule) {
            conditions.push(c);
        }
    }
}

/// One entry of a YAML or legacy file.
struct Entry {
    flag: String,
    treatment: String,
    keys: Option<Vec<String>>,
    config: Option<String>,
}

fn parse_legacy(text: &str, origin: &str) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let [flag, treatment] = words.as_slice() else {
            return Err(Error::Parse {
                origin: origin.to_string(),
                line: Some(i + 1),
                message: format!(
                    "expected `flag_name treatment`, got {}: {line:?}",
                    crate::text::count(words.len(), "word", "words")
                ),
            });
        };
        out.push(Entry {
            flag: (*flag).to_string(),
            treatment: (*treatment).to_string(),
            keys: None,
            config: None,
        });
    }
    Ok(out)
}

fn parse_yaml(text: &str, origin: &str) -> Result<Vec<Entry>, Error> {
    use serde_yaml_ng::Value;
    let err = |line: Option<usize>, message: String| Error::Parse {
        origin: origin.to_string(),
        line,
        message,
    };
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        let message = match line {
            Some(l) => without_line(e.to_string(), l),
            None => e.to_string(),
        };
        err(line, message)
    })?;
    let items = match doc {
        Value::Sequence(items) => items,
        Value::Null => Vec::new(),
        _ => {
            return Err(err(
                None,
                "expected a list of `- flag_name: {treatment: ..., keys: ..., config: ...}`".into(),
            ));
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let at = |msg: String| err(None, format!("entry {}: {msg}", i + 1));
        let Value::Mapping(map) = item else {
            return Err(at("expected a map `flag_name: {...}`".into()));
        };
        if map.len() != 1 {
            return Err(at(format!(
                "expected exactly one flag name per entry, got {}",
                map.len()
            )));
        }
        for (name, body) in map {
            let Value::String(flag) = name else {
                return Err(at("the flag name must be a string".into()));
            };
            let Value::Mapping(body) = body else {
                return Err(at(format!(
                    "flag '{flag}': expected a map with `treatment`"
                )));
            };
            let field = |k: &str| body.get(Value::String(k.into()));
            let treatment = match field("treatment") {
                Some(Value::String(t)) => t.clone(),
                Some(other) => {
                    return Err(at(format!(
                        "flag '{flag}': field 'treatment' must be a string, got {other:?}"
                    )));
                }
                None => return Err(at(format!("flag '{flag}': field 'treatment' is missing"))),
            };
            let keys = match field("keys") {
                None | Some(Value::Null) => None,
                Some(Value::String(k)) => Some(vec![k.clone()]),
                Some(Value::Sequence(ks)) => Some(
                    ks.iter()
                        .map(|k| match k {
                            Value::String(s) => Ok(s.clone()),
                            Value::Number(n) => Ok(n.to_string()),
                            other => Err(at(format!(
                                "flag '{flag}': field 'keys' must hold strings, got {other:?}"
                            ))),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                Some(other) => {
                    return Err(at(format!(
                        "flag '{flag}': field 'keys' must be a string or a list, got {other:?}"
                    )));
                }
            };
            let config = match field("config") {
                None | Some(Value::Null) => None,
                Some(Value::String(c)) => Some(c.clone()),
                Some(other) => {
                    return Err(at(format!(
                        "flag '{flag}': field 'config' must be a JSON string, got {other:?}"
                    )));
                }
            };
            out.push(Entry {
                flag,
                treatment,
                keys,
                config,
            });
        }
    }
    Ok(out)
}

/// Builds flag definitions from YAML or legacy entries.
fn synthesized(entries: Vec<Entry>) -> SplitChanges {
    // flag -> (whitelist conditions, catch-all conditions, configurations)
    type Parts = (
        Vec<serde_json::Value>,
        Vec<serde_json::Value>,
        BTreeMap<String, String>,
    );
    let mut flags: BTreeMap<String, Parts> = BTreeMap::new();
    let mut order = Vec::new();
    for e in entries {
        if !flags.contains_key(&e.flag) {
            order.push(e.flag.clone());
        }
        let parts = flags.entry(e.flag.clone()).or_default();
        let partitions = json!([{"treatment": e.treatment, "size": 100}]);
        match e.keys {
            Some(keys) => parts.0.push(json!({
                "conditionType": "WHITELIST",
                "matcherGroup": {"combiner": "AND", "matchers": [{
                    "keySelector": null, "matcherType": "WHITELIST", "negate": false,
                    "whitelistMatcherData": {"whitelist": keys}}]},
                "partitions": partitions, "label": "whitelisted"})),
            None => {
                // The legacy format has one line per flag: a later line replaces it.
                parts.1.push(json!({
                    "conditionType": "ROLLOUT",
                    "matcherGroup": {"combiner": "AND", "matchers": [{
                        "keySelector": null, "matcherType": "ALL_KEYS", "negate": false}]},
                    "partitions": partitions, "label": "default rule"}));
            }
        }
        if let Some(c) = e.config {
            parts.2.insert(e.treatment, c);
        }
    }
    let mut changes = SplitChanges::default();
    for name in order {
        let Some((whitelists, rollouts, configs)) = flags.remove(&name) else {
            continue;
        };
        let conditions: Vec<serde_json::Value> = whitelists.into_iter().chain(rollouts).collect();
        let def = json!({
            "name": name, "trafficTypeName": "user", "defaultTreatment": "control",
            "trafficAllocation": 100, "trafficAllocationSeed": 0, "seed": 0, "algo": 2,
            "changeNumber": 0, "status": "ACTIVE", "killed": false,
            "conditions": conditions, "configurations": configs});
        // The JSON above is built from plain strings, so it always has the model's shape.
        if let Ok(f) = serde_json::from_value::<FeatureFlag>(def) {
            changes.flags.d.push(f);
        }
    }
    changes
}

/// A legacy file: a later line for the same flag wins, so keep only the last catch-all.
fn keep_last_rollout(changes: &mut SplitChanges) {
    for f in &mut changes.flags.d {
        if let Some(conds) = f.conditions.as_mut() {
            let rollouts = conds
                .iter()
                .filter(|c| c.condition_type.as_deref() == Some("ROLLOUT"))
                .count();
            if rollouts > 1 {
                let mut seen = 0;
                conds.retain(|c| {
                    if c.condition_type.as_deref() != Some("ROLLOUT") {
                        return true;
                    }
                    seen += 1;
                    seen == rollouts
                });
            }
        }
    }
}

/// Reads every `*.json` segmentChanges file of `dir`, sorted by file name, with the problems
/// of keys that were skipped (each naming the file, line, segment and field).
pub(crate) fn load_segments(dir: &Path) -> Result<(Vec<SegmentChanges>, Vec<Error>), Error> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            files.push(path);
        }
    }
    files.sort();
    let mut out = Vec::with_capacity(files.len());
    let mut problems = Vec::new();
    for path in files {
        let text = read(&path)?;
        let origin = path.display().to_string();
        /// Whether the document has the fields of a segmentChanges document.
        #[derive(serde::Deserialize)]
        struct Fields {
            added: Option<serde::de::IgnoredAny>,
            removed: Option<serde::de::IgnoredAny>,
        }
        let (mut seg, more) = SegmentChanges::parse(&text, &origin)?;
        // Keys in either list mean the field is there; only an empty result is read again.
        if seg.added.is_empty()
            && seg.removed.is_empty()
            && let Ok(Fields {
                added: None,
                removed: None,
            }) = serde_json::from_str::<Fields>(&text)
        {
            return Err(Error::Parse {
                origin,
                line: None,
                message: "not a segmentChanges document: no \"added\" or \"removed\" field".into(),
            });
        }
        problems.extend(more);
        if seg.name.is_empty() {
            seg.name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
        }
        out.push(seg);
    }
    Ok((out, problems))
}

/// Parses a flags file and applies the legacy "later line wins" rule.
pub(crate) fn load(path: &Path) -> Result<(SplitChanges, Vec<Error>), Error> {
    let (mut changes, problems) = load_flags(path)?;
    if Format::of(path) == Format::Legacy {
        keep_last_rollout(&mut changes);
    }
    Ok((changes, problems))
}

/// Everything a localhost client loads: the flags file (filtered by the flag sets filter)
/// and the segment directory, compiled into a snapshot.
pub(crate) fn snapshot(config: &crate::Config) -> Result<(crate::Snapshot, Vec<Error>), Error> {
    let (mut changes, mut problems) = load(config.split_file())?;
    let filter = config.flag_sets_filter();
    if !filter.is_empty() {
        changes.flags.d.retain(|f| {
            f.sets
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .any(|s| filter.contains(s))
        });
    }
    let mut snap = crate::Snapshot::new();
    if let Some(dir) = config.segment_directory() {
        let (segments, more) = load_segments(dir)?;
        problems.extend(more);
        for seg in segments {
            snap = snap.apply_segment_changes(&seg);
        }
    }
    let (snap, more) = snap.replace_definitions(&changes);
    problems.extend(more);
    Ok((snap, problems))
}

/// The localhost inputs: the flags file and the files of the segment directory, sorted.
fn inputs(config: &crate::Config) -> Vec<PathBuf> {
    let mut files = vec![config.split_file().to_path_buf()];
    if let Some(dir) = config.segment_directory() {
        let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        segments.sort();
        files.extend(segments);
    }
    files
}

/// How long the localhost inputs must be left alone before a reload reads them.
pub(crate) const QUIET: std::time::Duration = std::time::Duration::from_millis(50);

/// True when no localhost input was modified within the last `quiet`: an editor or a
/// script that truncates a file and then writes it leaves it empty for a moment, and that
/// moment must not be loaded as the new definitions. A modification time in the future
/// counts as settled, so a skewed clock cannot stop reloads.
pub(crate) fn settled(config: &crate::Config, quiet: std::time::Duration) -> bool {
    let now = std::time::SystemTime::now();
    inputs(config).iter().all(|f| {
        std::fs::metadata(f)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_none_or(|age| age >= quiet)
    })
}

/// A fingerprint of the localhost inputs (file contents and segment files), to notice edits.
pub(crate) fn fingerprint(config: &crate::Config) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in inputs(config) {
        f.hash(&mut h);
        std::fs::read(&f).ok().hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_lines() {
        let (c, _) = parse_flags(
            "# c\n\nfeature_a on\nfeature_b   off\n",
            Format::Legacy,
            "f",
        )
        .unwrap();
        assert_eq!(c.flags.d.len(), 2);
        let e = parse_flags("a on\nb\n", Format::Legacy, "flags.split").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot parse flags.split at line 2: expected `flag_name treatment`, got 1 word: \"b\""
        );
    }

    #[test]
    fn yaml_entries() {
        let text = "- f:\n    treatment: \"on\"\n    keys: \"k1\"\n    config: \"{\\\"a\\\":1}\"\n- f:\n    treatment: \"off\"\n";
        let (c, _) = parse_flags(text, Format::Yaml, "f.yaml").unwrap();
        let f = &c.flags.d[0];
        let conds = f.conditions.as_ref().unwrap();
        assert_eq!(conds.len(), 2);
        assert_eq!(conds[0].condition_type.as_deref(), Some("WHITELIST"));
        assert_eq!(conds[1].condition_type.as_deref(), Some("ROLLOUT"));
        let e = parse_flags("- f: [1]\n", Format::Yaml, "f.yaml").unwrap_err();
        assert!(e.to_string().contains("flag 'f'"), "{e}");
        let e = parse_flags("- f: {treatment: on\n", Format::Yaml, "f.yaml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot parse f.yaml at line 2: did not find expected ',' or '}' (column 1), while parsing a flow mapping at line 1 column 6"
        );
    }

    #[test]
    fn a_number_out_of_range_skips_only_its_flag_or_key() {
        let text = "{\"ff\": {\"d\": [\n  {\"name\": \"ok\"},\n  {\"name\": \"bad\", \"seed\": 1e400}\n]}}";
        let (c, problems) = parse_flags(text, Format::Json, "f.json").unwrap();
        let names: Vec<&str> = c.flags.d.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["ok"]);
        assert_eq!(
            problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "flag 'bad': field 'seed': number out of range: 1e400 at line 3 column 31; \
              definition skipped"
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("beta.json"),
            "{\"added\": [\"a\", 1e400, \"b\"], \"since\": -1, \"till\": 1}",
        )
        .unwrap();
        let (segments, problems) = load_segments(dir.path()).unwrap();
        assert_eq!(segments[0].name, "beta");
        assert_eq!(segments[0].added, ["a", "b"]);
        let p = problems[0].to_string();
        assert!(
            p.contains("beta.json at line 1: field 'added[1]': 1e400 is not a string key"),
            "{p}"
        );
    }

    /// A file that starts with a UTF-8 byte-order mark reads as if it had none, in every
    /// format and in the segment directory.
    #[test]
    fn a_byte_order_mark_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let bom = "\u{feff}";
        let cases = [
            ("flags.split", format!("{bom}first on\nsecond off\n")),
            (
                "flags.yaml",
                format!(
                    "{bom}- first:\n    treatment: \"on\"\n- second:\n    treatment: \"off\"\n"
                ),
            ),
            (
                "flags.json",
                format!(
                    "{bom}{{\"ff\":{{\"d\":[{{\"name\":\"first\"}},{{\"name\":\"second\"}}],\"s\":-1,\"t\":1}}}}"
                ),
            ),
            (
                "legacy.json",
                format!("{bom}{{\"splits\":[{{\"name\":\"first\"}},{{\"name\":\"second\"}}]}}"),
            ),
        ];
        for (file, text) in cases {
            let path = dir.path().join(file);
            std::fs::write(&path, text).unwrap();
            let (changes, problems) = load(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(problems.is_empty(), "{file}: {problems:?}");
            let names: Vec<&str> = changes.flags.d.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(names, ["first", "second"], "{file}");
        }
        let segments = dir.path().join("segments");
        std::fs::create_dir(&segments).unwrap();
        std::fs::write(
            segments.join("beta.json"),
            format!("{bom}{{\"added\":[\"ann\"],\"removed\":[],\"since\":-1,\"till\":1}}"),
        )
        .unwrap();
        let (segs, problems) = load_segments(&segments).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            (segs[0].name.as_str(), segs[0].added.as_slice()),
            ("beta", &["ann".to_string()][..])
        );
    }

    #[test]
    fn a_file_that_is_not_utf8_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let utf16 = dir.path().join("flags.split");
        let mut bytes = vec![0xFF, 0xFE];
        for unit in "first on\n".encode_utf16() {
            bytes.extend(unit.to_le_bytes());
        }
        std::fs::write(&utf16, bytes).unwrap();
        let e = load(&utf16).unwrap_err().to_string();
        assert!(
            e.ends_with("flags.split: the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8"),
            "{e}"
        );
        let latin1 = dir.path().join("flags.yaml");
        std::fs::write(&latin1, b"- caf\xE9:\n    treatment: on\n- b\xE9:\n").unwrap();
        let e = load(&latin1).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "flags.yaml at line 1: not UTF-8: byte 0xe9 (column 6); save the file as UTF-8"
            ),
            "{e}"
        );
    }

    #[test]
    fn json_errors_name_the_line_once() {
        let e = parse_flags("{\"ff\": {\"d\": [\n  oops\n]}}", Format::Json, "f.json").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot parse f.json at line 2: expected value (column 3)"
        );
    }
}
