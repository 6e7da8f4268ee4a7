#!/usr/bin/env bash
# Install the real RocketMQ clients the interop tests drive, pinned, each in its own place:
#   $RMQ_PEERS_DIR/cpp     PyPI rocketmq==0.4.4 (C++ client 1.x, bundles librocketmq.so)
#   $RMQ_PEERS_DIR/cpp21   PyPI rocketmq-client-python==2.0.0 (C++ client 2.x bindings) ...
#   $RMQ_PEERS_DIR/cvs     ... run with LD_LIBRARY_PATH at rocketmq-python-cvs==2.1.0.3's library
#   $RMQ_PEERS_DIR/alions  npm ali-ons@3.12.0 (JavaScript), from .ci/alions/package-lock.json
#   $RMQ_PEERS_DIR/grpc5   PyPI rocketmq-python-client==5.1.2 (official 5.x gRPC client)
# Idempotent: a stamp holding the pins skips the work when nothing changed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=${RMQ_PEERS_DIR:-$HOME/.cache/rmqnode-peers}
python=${PYTHON:-python3}
pins="cpp=rocketmq==0.4.4 cpp21=rocketmq-client-python==2.0.0 cvs=rocketmq-python-cvs==2.1.0.3 grpc5=rocketmq-python-client==5.1.2 alions=$(sha256sum "$here/alions/package-lock.json" | cut -c1-16)"

mkdir -p "$dir"
if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$pins" ]; then
  echo "peers: already installed in $dir"
  exit 0
fi

fail() { echo "peers: $*" >&2; exit 1; }

venv_install() {  # name, requirement
  rm -rf "${dir:?}/$1"
  "$python" -m venv "$dir/$1" || fail "cannot create venv $dir/$1"
  "$dir/$1/bin/pip" install -q --disable-pip-version-check "$2" || fail "cannot install $2"
}

venv_install cpp rocketmq==0.4.4
venv_install cvs rocketmq-python-cvs==2.1.0.3
venv_install cpp21 rocketmq-client-python==2.0.0
venv_install grpc5 rocketmq-python-client==5.1.2

command -v npm >/dev/null || fail "npm is needed for ali-ons (Debian: apt-get install nodejs npm)"
rm -rf "$dir/alions" && mkdir -p "$dir/alions"
cp "$here/alions/package.json" "$here/alions/package-lock.json" "$dir/alions/"
(cd "$dir/alions" && npm ci --silent --no-audit --no-fund >/dev/null) || fail "npm ci of ali-ons failed"

# The bundled native libraries must find every shared object they link against.
for lib in "$dir"/cpp/lib/python3*/site-packages/rocketmq/librocketmq.so \
           "$dir"/cvs/lib/python3*/site-packages/rocketmq/librocketmq.so; do
  missing=$(ldd "$lib" | grep "not found" || true)
  [ -z "$missing" ] || fail "$lib needs: $missing"
done

echo "$pins" > "$dir/.stamp"
echo "peers: installed in $dir"
