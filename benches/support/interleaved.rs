//! Paired timing: bursts of every variant taken in turn, round after round, so that each one
//! sees the same machine state (on a shared VM the speed drifts by tens of percent from one
//! second to the next, more than the differences measured). Criterion times one variant
//! after another; this is the side-by-side figure.

use std::time::Instant;

/// The median and the fastest tenth of a variant's bursts, in ns per operation.
#[derive(Clone, Copy)]
pub(crate) struct Stat {
    pub(crate) median: f64,
    pub(crate) fastest_tenth: f64,
}

/// Runs `rounds` rounds; in each, every one of `variants` runs one timed burst of `burst`
/// operations (`op(variant, i)`, `i` counting every operation), then `after(variant)`
/// untimed (a flush, say).
pub(crate) fn bursts(
    variants: usize,
    rounds: usize,
    burst: usize,
    mut op: impl FnMut(usize, usize),
    mut after: impl FnMut(usize),
) -> Vec<Stat> {
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); variants];
    let mut i = 0usize;
    for _ in 0..rounds {
        for (v, t) in times.iter_mut().enumerate() {
            let start = Instant::now();
            for _ in 0..burst {
                i = i.wrapping_add(1);
                op(v, i);
            }
            t.push(start.elapsed().as_nanos() as f64 / burst as f64);
            after(v);
        }
    }
    times
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            Stat {
                median: t[t.len() / 2],
                fastest_tenth: t[t.len() / 10],
            }
        })
        .collect()
}

/// Prints each variant's median and fastest tenth.
pub(crate) fn print(title: &str, names: &[&str], stats: &[Stat]) {
    eprintln!("{title}: median / fastest tenth, ns per operation");
    for (name, s) in names.iter().zip(stats) {
        eprintln!("  {name:<26} {:6.1} / {:6.1}", s.median, s.fastest_tenth);
    }
}
