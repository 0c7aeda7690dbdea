#!/usr/bin/env bash
# fuzz/run.sh - `make fuzz`: runs every fuzz target for FUZZ_TIME seconds, from its seeds
# (fuzz/seeds/<target>) and its growing corpus (build-fuzz/corpus/<target>), and prints how
# many inputs each executed (libFuzzer's stat::number_of_executed_units) and the total. When the
# total is short of FUZZ_EXECS, every target runs another round (at most FUZZ_ROUNDS in all):
# on a loaded machine the goal is still met, and the extra time goes to every target.
#
# Each input has a time limit (-timeout, FUZZ_INPUT_TIMEOUT seconds: a slower one is a
# failure, written to build-fuzz/artifacts/ like a crash) and inputs slower than 1 s are
# reported (-report_slow_units). Exits nonzero on a crash, a timeout, or a short total.
#
# Usage: fuzz/run.sh <dir with the fuzz binaries> [target...]   (default: all of fuzz/fuzz_*.c)
set -u
cd "$(dirname "$0")/.."
BIN=${1:?usage: fuzz/run.sh <bin dir> [target...]}
shift
FUZZ_TIME=${FUZZ_TIME:-60}
FUZZ_EXECS=${FUZZ_EXECS:-10000000}
FUZZ_ROUNDS=${FUZZ_ROUNDS:-3}
FUZZ_INPUT_TIMEOUT=${FUZZ_INPUT_TIMEOUT:-2}
OUT=build-fuzz
LOGS=$OUT/logs

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for src in fuzz/fuzz_*.c; do targets+=("$(basename "$src" .c)"); done
fi
mkdir -p "$LOGS" "$OUT/artifacts"

declare -A execs
total=0
rc=0
for t in "${targets[@]}"; do execs[$t]=0; done
round=0
while [ "$round" -lt "$FUZZ_ROUNDS" ]; do
    round=$((round + 1))
    for t in "${targets[@]}"; do
        bin=$BIN/$t
        if [ ! -x "$bin" ]; then
            echo "error: $bin was not built" >&2
            rc=1
            continue
        fi
        mkdir -p "$OUT/corpus/$t"
        seeds=()
        [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
        log=$LOGS/$t.$round.log
        echo "== $t (round $round, $FUZZ_TIME s)"
        "$bin" -max_total_time="$FUZZ_TIME" -timeout="$FUZZ_INPUT_TIMEOUT" -report_slow_units=1 \
            -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t-" \
            "$OUT/corpus/$t" "${seeds[@]}" >"$log" 2>&1
        st=$?
        n=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -n 1)
        n=${n:-0}
        execs[$t]=$((execs[$t] + n))
        total=$((total + n))
        grep -E 'Slowest unit|^==[0-9]+==ERROR|^SUMMARY|deadly signal|Test unit written' "$log" |
            sed 's/^/   /'
        if [ "$st" -ne 0 ]; then
            echo "   FAILED: $t exited $st (log: $log)"
            rc=1
        fi
        printf '   %s: %d executions\n' "$t" "$n"
    done
    [ "$total" -ge "$FUZZ_EXECS" ] && break
    echo "== $total executions so far, short of $FUZZ_EXECS: another round"
done

echo
echo "fuzz executions per target:"
for t in "${targets[@]}"; do printf '  %-22s %12d\n' "$t" "${execs[$t]}"; done
printf '  %-22s %12d  (goal %d, %d round(s) of %d s per target)\n' total "$total" "$FUZZ_EXECS" \
    "$round" "$FUZZ_TIME"
if [ "$total" -lt "$FUZZ_EXECS" ]; then
    echo "error: fewer than $FUZZ_EXECS executions: raise FUZZ_TIME" >&2
    rc=1
fi
exit $rc
