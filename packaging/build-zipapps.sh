#!/bin/sh
# Build dist/rmqnode.pyz and dist/rmqctl.pyz: one file each, with every dependency inside
# (shiv zipapps), for copying to a host that has Python but none of our packages.
#
#   sh packaging/build-zipapps.sh            # from a checkout; PYTHON=python3.12 to choose
#
# Compiled dependencies (grpcio, zstandard, protobuf) are the builder's wheels: build with
# the Python minor version, OS and CPU architecture of the hosts that will run the files. On
# first run a zipapp unpacks itself into ~/.shiv (SHIV_ROOT to move it) and starts from
# there afterwards.
set -eu
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
"$python" -m shiv --version >/dev/null 2>&1 || {
    echo "build-zipapps: shiv is not installed for $python (pip install shiv==1.0.8)" >&2
    exit 1
}
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT INT TERM
# One install of the project and its dependencies, shared by both files.
"$python" -m pip install --quiet --disable-pip-version-check --target "$site" .
mkdir -p dist
for prog in rmqnode rmqctl; do
    "$python" -m shiv --site-packages "$site" --console-script "$prog" \
        --output-file "dist/$prog.pyz" --python "/usr/bin/env python3" --compressed \
        --reproducible
    echo "built dist/$prog.pyz"
done
