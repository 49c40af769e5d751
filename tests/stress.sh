#!/bin/bash
# Run the integration tests N times (default 20) in a row while a CPU hog
# keeps every core busy, and print "N passed, N failed" (runs of the whole
# set). A test that passes only on an idle machine fails here.
#
#   tests/stress.sh            # 20 rounds
#   ROUNDS=5 tests/stress.sh   # fewer
#
# Not part of .ci/run (it takes a while); run it before declaring a
# change to the daemon or its tests done.
set -uo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-20}
tests=(--test daemon --test faults --test register --test e2e --test probe_test --test security --test handlers)

cargo test --locked --no-run "${tests[@]}" >/dev/null 2>&1 || {
    echo "stress: the tests do not build" >&2
    exit 1
}

# One busy loop per core, for the whole run.
hogs=()
for _ in $(seq "$(nproc)"); do
    ( while :; do :; done ) &
    hogs+=($!)
done
trap 'kill "${hogs[@]}" 2>/dev/null' EXIT

passed=0 failed=0
mkdir -p target/stress
for i in $(seq "$rounds"); do
    log=target/stress/round-$i.log
    if cargo test --locked "${tests[@]}" >"$log" 2>&1; then
        passed=$((passed + 1))
        echo "stress: round $i passed"
    else
        failed=$((failed + 1))
        echo "stress: round $i FAILED (see $log):"
        grep -E '^(test .* FAILED|---- )' "$log" | sed 's/^/    /'
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
