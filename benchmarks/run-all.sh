#!/usr/bin/env bash
# Runs every benchmark in turn (`make bench`). Each prints its own figures and the ratio against a
# baseline measured in the same run; nothing here asserts on time. Pass QUICK=1 for shorter runs.
set -u
cd "$(dirname "$0")/.."
py=.venv/bin/python
quick=${QUICK:-0}
status=0
run() {
  echo
  echo "== $*"
  "$py" "$@" || { echo "!! $1 failed (exit $?)"; status=1; }
}
run benchmarks/startup.py
if [ "$quick" = 1 ]; then
  run benchmarks/transcode_speed.py --minutes 3
  run benchmarks/transcode_quality.py
  run benchmarks/transcode_memory.py --minutes 10
  run benchmarks/pacing.py --seconds 10
  run benchmarks/register_speed.py --runs 5
  run benchmarks/register_pacing.py --seconds 10
  run benchmarks/emulator_load.py --sessions 20
  run benchmarks/watch_throughput.py --files 40
  run benchmarks/watch_memory.py --waves 10
  run benchmarks/store_write.py --records 90
  run benchmarks/store_list.py --records 20000 --runs 3
  run benchmarks/reenroll_throughput.py --speakers 40
else
  run benchmarks/transcode_speed.py
  run benchmarks/transcode_quality.py
  run benchmarks/transcode_memory.py
  run benchmarks/pacing.py
  run benchmarks/register_speed.py
  run benchmarks/register_pacing.py
  run benchmarks/emulator_load.py
  run benchmarks/watch_throughput.py
  run benchmarks/watch_memory.py
  run benchmarks/store_write.py
  run benchmarks/store_list.py
  run benchmarks/reenroll_throughput.py
fi
run benchmarks/voiceprint_margins.py
exit $status
