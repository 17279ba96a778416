#!/usr/bin/env bash
# Idempotent set-up: .venv with the project (editable), the offline teacher's weights
# package, and Debian's espeak-ng for the built-in corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'
# Resemblyzer ships the speaker encoder's weights (pretrained.pt); its own dependencies
# would pull torch, which we do not need: the teacher is rebuilt in tf-keras.
.venv/bin/pip install -q --no-deps resemblyzer==0.1.4
if ! command -v espeak-ng >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
  else
    echo "setup: install Debian's espeak-ng (sudo apt-get install espeak-ng) for the built-in corpus" >&2
  fi
fi
# A Jupyter kernel inside the venv, for the notebook test.
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
echo "setup: ok"
