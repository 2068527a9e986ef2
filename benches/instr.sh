#!/usr/bin/env bash
# Instructions per operation of the scenarios of benches/instr.rs, counted by callgrind on
# the calling thread: each scenario runs N and 2N operations and the difference is divided
# by N, so that setup, warm-up and exit cancel out. Repeatable to a few instructions, under
# any load.
#
# With THREAD=worker, the busiest thread other than the calling one is counted instead: in
# the client_* scenarios, the impressions worker (serialisation and batching, per impression).
#
# With --check, only the scenarios of benches/instr_budgets are run, and the script fails
# when one costs more than its budget there (CI runs this: what must not regress).
#
# Usage: benches/instr.sh [--check] [scenario...]   (default: every scenario; N=$N, default 8192)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-8192}
budgets=benches/instr_budgets
check=false
if [ "${1:-}" = --check ]; then
    check=true
    shift
fi
# The budget of scenario $1, from the budgets file (empty when it has none, and for the
# worker's counts: the budgets are the calling thread's).
budget() {
    [ "${THREAD:-main}" = worker ] || awk -v s="$1" '$1 == s { print $2 }' "$budgets"
}
bin=$(cargo bench --bench instr --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "instr bench binary not found" >&2; exit 1; }
if [ $# -eq 0 ] && $check; then
    mapfile -t scenarios < <(awk '!/^#/ && NF { print $1 }' "$budgets")
elif [ $# -eq 0 ]; then
    mapfile -t scenarios < <("$bin" --list)
else
    scenarios=("$@")
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The instructions of one thread's profile file.
total() {
    sed -n 's/^summary: *//p;s/^totals: *//p' "$1" | head -n 1
}
# The instructions of the main thread (callgrind numbers threads from 1) of `bin $1 $2`, or
# with THREAD=worker of the busiest other thread.
count() {
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out/$1.$2" \
        "$bin" "$1" "$2" >/dev/null 2>"$out/$1.$2.log" || { cat "$out/$1.$2.log" >&2; exit 1; }
    if [ "${THREAD:-main}" = worker ]; then
        for f in "$out/$1.$2"-*; do
            case "$f" in *-01|*.log) continue ;; esac
            total "$f"
        done | sort -n | tail -n 1
    else
        total "$out/$1.$2-01"
    fi
}
printf '%-22s %12s %8s\n' scenario instr/op budget
over=0
for s in "${scenarios[@]}"; do
    a=$(count "$s" "$N")
    b=$(count "$s" $((2 * N)))
    n=$(( (b - a) / N ))
    max=$(budget "$s")
    printf '%-22s %12s %8s\n' "$s" "$n" "${max:--}"
    if $check && [ -n "$max" ] && [ "$n" -gt "$max" ]; then
        echo "$s: $n instructions an operation, over its budget of $max ($budgets)" >&2
        over=1
    fi
done
exit "$over"
