//! Peak resident memory (Linux): `VmHWM` of `/proc/self/status`, reset through
//! `/proc/self/clear_refs` first. Shared by `tests/memory.rs` and `benches/loading.rs`.

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`), in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What `f` returns, with the resident memory before it ran and the most resident while it
/// ran, in bytes (`None` where that cannot be measured).
pub fn peak_rss<R>(f: impl FnOnce() -> R) -> (R, Option<(u64, u64)>) {
    // "5" resets VmHWM to the current RSS (Linux 4.0+).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = status_bytes("VmRSS");
    let r = f();
    let measured = match (reset, before, status_bytes("VmHWM")) {
        (true, Some(before), Some(peak)) => Some((before, peak)),
        _ => None,
    };
    (r, measured)
}
