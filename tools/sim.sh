#!/usr/bin/env bash
# Runs the simulator's schedules (internal/sim) in one process per core, each
# on its own range of seeds, and prints the total and the rate. Usage:
#   tools/sim.sh [SCHEDULES] [FIRST_SEED]     (default 100000 from seed 1)
# A failing seed is printed with the command that replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:-100000}
first=${2:-1}
procs=$(nproc)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go test -c -o "$dir/sim.test" ./internal/sim
# The simulator allocates a great deal and keeps little (one schedule at a
# time, a few tens of MB): collecting a quarter as often takes a fifth off
# its CPU time (docs/benchmarks.md, "Simulator").
export GOGC=${GOGC:-400}
per=$(( (total + procs - 1) / procs ))
start=$(date +%s.%N)
pids=()
for i in $(seq 0 $((procs - 1))); do
  from=$(( first + i * per ))
  n=$(( total - i * per < per ? total - i * per : per ))
  [ "$n" -gt 0 ] || break
  "$dir/sim.test" -test.run '^TestSimulator_NoScheduleBreaksAPromise$' -test.v -test.count=1 \
    -sim.first="$from" -sim.schedules="$n" >"$dir/out.$i" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then status=1; fi
  # Everything but the RUN line: a failing seed's violations included.
  grep -v '^=== RUN' "$dir/out.$i" || true
done
end=$(date +%s.%N)
awk -v n="$total" -v s="$start" -v e="$end" -v p="${#pids[@]}" \
  'BEGIN { printf "simulator: %d schedules in %.1f s on %d processes: %.0f schedules/s\n", n, e - s, p, n / (e - s) }'
exit $status
