#!/usr/bin/env bash
# Install the real RocketMQ clients ("peers") the interop tests drive: pinned, each in its own
# venv or folder under $RMQ_PEERS_DIR (default ~/.cache/rmqnode-peers, outside the repo so that
# CI can cache it and `git clean` keeps it):
#   cpp/     PyPI rocketmq==0.4.4                C++ client 1.x (wheel bundles librocketmq.so)
#   cvs/     PyPI rocketmq-python-cvs==2.1.0.3   only for its librocketmq.so (rocketmq-client-cpp 2.1.0)
#   cpp21/   PyPI rocketmq-client-python==2.0.0 the 2.x bindings; run with LD_LIBRARY_PATH=cvs's library
#   alions/  npm ali-ons@3.12.0                  JavaScript, from .ci/alions/package-lock.json
#   grpc5/   PyPI rocketmq-python-client==5.1.2  official 5.x gRPC client, dependencies pinned below
#   grpcnode/ npm rocketmq-client-nodejs@1.0.8   official 5.x gRPC client for Node.js, from
#                                                .ci/grpcnode/package-lock.json
# tests/peers.py finds them there. Needs PyPI, npm and (only if something is missing) Debian's
# apt repositories. Idempotent: a stamp holding every pin makes a second run take milliseconds.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${RMQ_PEERS_DIR:-$HOME/.cache/rmqnode-peers}
# The interpreter behind the venvs: the real one, even when called from inside a venv (.ci/run).
python=$("${PYTHON:-python3}" -c 'import os, sys; print(os.path.realpath(sys._base_executable))') \
  || { echo "peers.sh: FAILED: no Python at ${PYTHON:-python3} (set PYTHON)" >&2; exit 1; }

fail() { echo "peers.sh: FAILED: $*" >&2; exit 1; }
say() { echo "peers.sh: $*"; }

[ "$(uname -sm)" = "Linux x86_64" ] || fail "the C++ clients ship x86_64 Linux libraries only, not $(uname -sm)"

# The grpc5 client's dependencies, pinned (its own metadata leaves them open).
grpc5_constraints="certifi==2026.10.19.post1
charset-normalizer==3.5.2
googleapis-common-protos==1.76.0
grpcio==1.85.3
grpcio-tools==1.85.1
idna==3.20
opentelemetry-api==1.45.2
opentelemetry-exporter-http-transport==0.66b2
opentelemetry-exporter-otlp==1.45.2
opentelemetry-exporter-otlp-common==0.66b2
opentelemetry-exporter-otlp-proto-common==1.45.2
opentelemetry-exporter-otlp-proto-grpc==1.45.2
opentelemetry-exporter-otlp-proto-http==1.45.2
opentelemetry-proto==1.45.2
opentelemetry-sdk==1.45.2
opentelemetry-semantic-conventions==0.66b2
protobuf==7.36.2
requests==2.34.2
typing_extensions==4.16.0
urllib3==2.8.0"

# --- Debian packages (checked on every run: a cached peers dir may land on a fresh machine) ---
#   libstdc++6 libgcc-s1  both librocketmq.so are C++ built against the system C++ runtime
#   zlib1g                the 2.1 library (cvs) links the system libz.so.1 (the 0.4.4 wheel bundles its own)
#   nodejs npm            ali-ons, rocketmq-client-nodejs
#   openssl               the gRPC TLS test makes a self-signed certificate with it
#   python3-venv          `python3 -m venv` with Debian's own python3 (only when ensurepip is missing)
apt_install() {
  command -v apt-get >/dev/null || fail "missing system packages ($*) and no apt-get to install them"
  local sudo=
  [ "$(id -u)" = 0 ] || sudo=sudo
  say "installing Debian packages: $*"
  $sudo apt-get update -qq || fail "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" \
    || fail "apt-get install $* failed"
}
missing=()
if command -v dpkg-query >/dev/null; then
  for pkg in libstdc++6 libgcc-s1 zlib1g; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" = installed ] || missing+=("$pkg")
  done
fi
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
command -v openssl >/dev/null || missing+=(openssl)
"$python" -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

# --- the stamp: every pin, the interpreter behind the venvs, the ali-ons lock ---
stamp="cpp=rocketmq==0.4.4
cvs=rocketmq-python-cvs==2.1.0.3
cpp21=rocketmq-client-python==2.0.0
grpc5=rocketmq-python-client==5.1.2 $(echo "$grpc5_constraints" | sha256sum | cut -c1-16)
alions=$(sha256sum "$here/alions/package.json" "$here/alions/package-lock.json" | cut -c1-16 | tr '\n' ' ')
grpcnode=$(sha256sum "$here/grpcnode/package.json" "$here/grpcnode/package-lock.json" | cut -c1-16 | tr '\n' ' ')
python=$python $("$python" -c 'import sys; print(sys.version.split()[0])')
node=$(node --version)"

mkdir -p "$dir"
if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ]; then
  say "already installed in $dir"
  exit 0
fi
rm -f "$dir/.stamp"
say "installing into $dir"

venv_install() {  # name, pip arguments...
  local name=$1
  shift
  rm -rf "${dir:?}/$name"
  "$python" -m venv "$dir/$name" || fail "cannot create the venv $dir/$name with $python"
  "$dir/$name/bin/python" -m pip install -q --no-input --disable-pip-version-check --use-pep517 "$@" \
    || fail "pip install $* into $dir/$name failed"
}

venv_install cpp rocketmq==0.4.4
venv_install cvs rocketmq-python-cvs==2.1.0.3
venv_install cpp21 rocketmq-client-python==2.0.0
echo "$grpc5_constraints" > "$dir/grpc5-constraints.txt"
venv_install grpc5 rocketmq-python-client==5.1.2 -c "$dir/grpc5-constraints.txt"

rm -rf "$dir/alions" && mkdir -p "$dir/alions"
cp "$here/alions/package.json" "$here/alions/package-lock.json" "$dir/alions/"
(cd "$dir/alions" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) \
  || fail "npm ci of ali-ons (from .ci/alions/package-lock.json) failed"

rm -rf "$dir/grpcnode" && mkdir -p "$dir/grpcnode"
cp "$here/grpcnode/package.json" "$here/grpcnode/package-lock.json" "$dir/grpcnode/"
(cd "$dir/grpcnode" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) \
  || fail "npm ci of rocketmq-client-nodejs (from .ci/grpcnode/package-lock.json) failed"

# --- check: the native libraries resolve, and every peer loads (HOME: they write logs there) ---
cpp_lib=$(echo "$dir"/cpp/lib/python3*/site-packages/rocketmq/librocketmq.so)
cvs_dir=$(echo "$dir"/cvs/lib/python3*/site-packages/rocketmq)
for lib in "$cpp_lib" "$cvs_dir/librocketmq.so"; do
  [ -f "$lib" ] || fail "$lib is missing: the package did not ship its library"
  unresolved=$(ldd "$lib" | grep "not found" || true)
  [ -z "$unresolved" ] || fail "$lib needs shared libraries that are not installed: $unresolved"
done
check_home=$(mktemp -d)
trap 'rm -rf "$check_home"' EXIT
HOME=$check_home "$dir/cpp/bin/python" -c 'from rocketmq.client import Producer; Producer("PG")' \
  || fail "the C++ 1.x client does not load"
HOME=$check_home LD_LIBRARY_PATH=$cvs_dir ROCKETMQ_CLIENT_LOG_DIR=$check_home/logs \
  "$dir/cpp21/bin/python" -c 'from rocketmq.client import TransactionMQProducer' \
  || fail "the C++ 2.1 client does not load with LD_LIBRARY_PATH=$cvs_dir"
HOME=$check_home NODE_PATH=$dir/alions/node_modules node -e 'require("ali-ons")' \
  || fail "ali-ons does not load"
HOME=$check_home NODE_PATH=$dir/grpcnode/node_modules node -e \
  'const m = require("rocketmq-client-nodejs"); if (!m.Producer || !m.SimpleConsumer) process.exit(1)' \
  || fail "rocketmq-client-nodejs does not load"
HOME=$check_home "$dir/grpc5/bin/python" -c 'from rocketmq import Producer, SimpleConsumer' \
  || fail "the 5.x gRPC client does not load"

echo "$stamp" > "$dir/.stamp"
say "installed in $dir"
