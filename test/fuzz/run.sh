#!/bin/sh
# Runs one libFuzzer target for FUZZ_SECONDS on a copy of its seed corpus,
# after replaying every kept crash input (test/fuzz/crashes/TARGET/). A new
# crash input is kept there, to be fixed and then replayed for ever.
# Prints "ok - ..." / "not ok - ..." lines and "fuzz TARGET: N runs".
set -u
t=$1
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=$top/build/fuzz-$t
crashes=$top/test/fuzz/crashes/$t
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rc=0
if [ -d "$crashes" ] && [ -n "$(ls -A "$crashes" 2>/dev/null)" ]; then
        if "$bin" -runs=0 "$crashes"/* >"$work/replay.log" 2>&1; then
                echo "ok - fuzz $t: $(ls "$crashes" | wc -l) kept crash inputs replay cleanly"
        else
                echo "not ok - fuzz $t: a kept crash input fails again"; tail -20 "$work/replay.log"; rc=1
        fi
fi
mkdir -p "$work/corpus" "$crashes"
cp "$top/test/fuzz/corpus/$t"/* "$work/corpus/" 2>/dev/null
"$bin" -max_total_time="${FUZZ_SECONDS:-20}" -max_len=8192 -timeout=10 -rss_limit_mb=1024 \
        -artifact_prefix="$work/" -print_final_stats=1 "$work/corpus" >"$work/fuzz.log" 2>&1
frc=$?
runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/fuzz.log" | grep -o '[0-9]*$')
echo "fuzz $t: ${runs:-0} runs"
if [ "$frc" -eq 0 ]; then
        echo "ok - fuzz $t: ${runs:-0} executions without a crash"
else
        for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
                [ -e "$f" ] && cp "$f" "$crashes/"
        done
        echo "not ok - fuzz $t: crashed (input kept in test/fuzz/crashes/$t)"; grep -A15 'ERROR\|SUMMARY' "$work/fuzz.log" | head -30
        rc=1
fi
exit $rc
