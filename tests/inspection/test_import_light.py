"""The log reader and the terminal inspector must not import torch or transformers (reading a log stays fast)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "trl", "accelerate", "ray", "faiss")


@pytest.mark.parametrize("module", ["grace_rl.inspection", "grace_rl.inspection.log", "grace_rl.inspection.inspector"])
def test_inspection_imports_no_ml_stack(module):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True, check=True
    )
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert module.split(".")[0] in imported  # the -X importtime listing is there at all
    assert not imported.intersection(HEAVY), sorted(imported.intersection(HEAVY))
