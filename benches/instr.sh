#!/usr/bin/env bash
# Instructions per operation of the scenarios of benches/instr.rs, counted by callgrind on
# the calling thread: each scenario runs N and 2N operations and the difference is divided
# by N, so that setup, warm-up and exit cancel out. Repeatable to a few instructions, under
# any load.
#
# Usage: benches/instr.sh [scenario...]   (default: every scenario; N=$N, default 8192)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-8192}
bin=$(cargo bench --bench instr --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "instr bench binary not found" >&2; exit 1; }
if [ $# -eq 0 ]; then
    mapfile -t scenarios < <("$bin" --list)
else
    scenarios=("$@")
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The instructions of the main thread (callgrind numbers threads from 1) of `bin $1 $2`.
count() {
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out/$1.$2" \
        "$bin" "$1" "$2" >/dev/null 2>"$out/$1.$2.log" || { cat "$out/$1.$2.log" >&2; exit 1; }
    sed -n 's/^summary: *//p;s/^totals: *//p' "$out/$1.$2-01" | head -n 1
}
printf '%-22s %12s\n' scenario instr/op
for s in "${scenarios[@]}"; do
    a=$(count "$s" "$N")
    b=$(count "$s" $((2 * N)))
    printf '%-22s %12s\n' "$s" $(( (b - a) / N ))
done
