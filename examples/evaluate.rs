//! Evaluates requests against flag definitions: a debugging tool for definitions.
//!
//! ```text
//! cargo run --release --example evaluate -- --flags FILE [--segments DIR] < requests.jsonl
//! ```
//!
//! Each input line is `{"key", "bucketing_key"?, "flag", "attributes"?}`; each output line is
//! `{"treatment", "label", "config", "change_number", "impression"}`, where `label` is the label
//! the impression would carry (null only for invalid input) and `impression` says whether an
//! impression would be recorded. Keys given as JSON numbers are converted to their decimal
//! text. A line that cannot be read gives `{"error": "..."}` and processing goes on.
//! The flags file is a splitChanges JSON document (spec 1.3 or legacy), evaluated exactly as
//! written (no localhost sanitization); segments are segmentChanges JSON files.

use std::io::{BufRead, BufWriter, Write};
use std::process::ExitCode;

use serde_json::{Value, json};
use splitkit::definitions::SegmentChanges;
use splitkit::{Attributes, Client, Key, Snapshot};

fn usage() -> ExitCode {
    eprintln!("usage: evaluate --flags FILE [--segments DIR] < requests.jsonl");
    ExitCode::from(2)
}

/// A key as the SDKs accept it: a string, or a finite number converted to text.
/// `Err` for any other JSON type (the SDKs answer control without an impression).
fn key_text(v: Option<&Value>) -> Result<Option<String>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(()),
    }
}

fn answer(client: &Client, line: &str) -> Value {
    let req: Value = match serde_json::from_str(line) {
        Ok(v @ Value::Object(_)) => v,
        Ok(other) => return json!({"error": format!("expected a JSON object, got {other}")}),
        Err(e) => return json!({"error": format!("malformed JSON: {e}")}),
    };
    let invalid = json!({"treatment": "control", "label": null, "config": null,
                         "change_number": null, "impression": false});
    let Ok(Some(key)) = key_text(req.get("key")) else {
        return invalid;
    };
    let Ok(bucketing) = key_text(req.get("bucketing_key")) else {
        return invalid;
    };
    let Some(flag) = req.get("flag").and_then(Value::as_str) else {
        return invalid;
    };
    let attributes = match req.get("attributes") {
        None => None,
        Some(a) => match Attributes::from_json(a) {
            Ok(a) => Some(a),
            Err(e) => return json!({"error": e.to_string()}),
        },
    };
    let key = match &bucketing {
        Some(b) => Key::new(&key, b),
        None => Key::from(key.as_str()),
    };
    let d = client.evaluate(key, flag, attributes.as_ref());
    json!({
        "treatment": d.treatment,
        "label": d.label.as_ref().map(|l| l.as_str()),
        "config": d.config,
        "change_number": d.change_number,
        "impression": d.impression,
    })
}

/// The definitions as written, plus every segment file of `segments`.
fn load(flags: &str, segments: Option<&str>) -> Result<Snapshot, splitkit::Error> {
    let text = std::fs::read_to_string(flags).map_err(|source| splitkit::Error::Io {
        path: flags.into(),
        source,
    })?;
    let (mut snapshot, problems) = Snapshot::from_json(&text, flags)?;
    for p in problems {
        eprintln!("evaluate: {p}");
    }
    if let Some(dir) = segments {
        for segment in SegmentChanges::load_dir(std::path::Path::new(dir))? {
            snapshot = snapshot.apply_segment_changes(&segment);
        }
    }
    Ok(snapshot)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut flags, mut segments) = (None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--flags" => flags = args.next(),
            "--segments" => segments = args.next(),
            _ => return usage(),
        }
    }
    let Some(flags) = flags else {
        return usage();
    };
    let client = match load(&flags, segments.as_deref())
        .and_then(|snapshot| Client::builder("localhost").snapshot(snapshot).build())
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("evaluate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stdin = std::io::stdin();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("evaluate: reading standard input: {e}");
                return ExitCode::FAILURE;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let result = answer(&client, &line);
        if writeln!(out, "{result}").is_err() {
            return ExitCode::FAILURE;
        }
    }
    if out.flush().is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
