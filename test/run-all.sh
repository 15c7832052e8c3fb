#!/bin/sh
# Runs every test tier and counts: the C unit tests (build/unit), then each
# executable test/tier-* in name order. A tier prints "ok - ..." or
# "not ok - ..." per assertion; a tier that dies without saying why counts as
# one failure. The last line is "N passed, M failed".
cd "$(dirname "$0")/.." || exit 1
TIER_TIMEOUT=${TIER_TIMEOUT:-900}
passed=0 failed=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for t in build/unit test/tier-*; do
        [ -x "$t" ] || continue
        echo "== $t"
        timeout -k 10 "$TIER_TIMEOUT" "$t" >"$out" 2>&1
        rc=$?
        cat "$out"
        p=$(grep -c '^ok - ' "$out")
        f=$(grep -c '^not ok - ' "$out")
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
                echo "not ok - $t exited with status $rc"
                f=1
        fi
        passed=$((passed + p))
        failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
