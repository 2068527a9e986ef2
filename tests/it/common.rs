//! Helpers shared by the integration tests.

use std::path::PathBuf;

use splitkit::{SegmentChanges, Snapshot};

/// `../shared/vectors/<rel>`, next to the repository.
pub fn vectors(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/vectors")
        .join(rel)
}

pub fn read(rel: &str) -> String {
    let p = vectors(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A snapshot from a flags document plus segmentChanges files.
pub fn snapshot(flags: &str, segments: &[&str]) -> Snapshot {
    let (mut s, problems) = Snapshot::from_json(&read(flags), flags).expect("document parses");
    for p in &problems {
        eprintln!("problem: {p}");
    }
    for seg in segments {
        let changes: SegmentChanges = serde_json::from_str(&read(seg)).expect("segment parses");
        s = s.apply_segment_changes(&changes);
    }
    s
}
