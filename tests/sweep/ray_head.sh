#!/usr/bin/env bash
# Run a command against a real single-node Ray head, every socket on the loopback address. Meant to run
# inside namespaces its caller made (`unshare --net --pid --fork --mount-proc`): the new network namespace
# has only `lo`, so whatever address Ray advertises or listens on is reachable from here only, and the
# new PID namespace makes `ray stop` see (and end) only this head's processes.
#   ray_head.sh RAY_BIN TEMP_DIR COMMAND...      (the command gets RAY_ADDRESS)
set -euo pipefail
ray_bin=$1 temp_dir=$2
shift 2
ip link set lo up
# The head and the driver must agree on token auth (a stray ~/.ray/auth_token would make them disagree).
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
trap '"$ray_bin" stop --force >/dev/null 2>&1 || true' EXIT
"$ray_bin" start --head --node-ip-address=127.0.0.1 --port=6379 --num-cpus 2 --include-dashboard=false \
  --disable-usage-stats --object-store-memory 80000000 --temp-dir "$temp_dir" >"$temp_dir/ray-start.log" 2>&1 \
  || { cat "$temp_dir/ray-start.log" >&2; exit 3; }
RAY_ADDRESS=127.0.0.1:6379 "$@"
