#!/bin/sh
# The fuzz targets, briefly (FUZZ_CHECK_SECONDS each), after replaying
# every kept crash input. `make fuzz` runs them longer.
cd "$(dirname "$0")/.." || exit 1
make -s build/fuzz-request build/fuzz-chunked build/fuzz-names build/fuzz-response >/dev/null || { echo "not ok - fuzz targets build"; exit 1; }
rc=0
for t in request chunked names response; do
        FUZZ_SECONDS=${FUZZ_CHECK_SECONDS:-20} test/fuzz/run.sh "$t" || rc=1
done
exit $rc
