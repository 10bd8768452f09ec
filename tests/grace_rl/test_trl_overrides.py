"""`GraceTrainer` overrides private `trl.GRPOTrainer` methods, so a TRL release can break training at import or,
worse, silently. `pyproject.toml` pins TRL's minor version; these tests fail when the installed TRL's overridden
methods change their parameters, and when the pin and the installed version disagree. To move to a new TRL: read the
new versions of these methods, port the overrides, then update RECORDED and the pin together."""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version
from pathlib import Path

import pytest
import trl

from grace_rl.trainer import GraceTrainer

# (name, kind, default) of each parameter, as in TRL 1.16 (the version the overrides were written for).
RECORDED = {
    "_generate_single_turn": [
        ("self", "POSITIONAL_OR_KEYWORD", None),
        ("prompt_ids", "POSITIONAL_OR_KEYWORD", None),
        ("images", "POSITIONAL_OR_KEYWORD", None),
        ("multimodal_fields", "POSITIONAL_OR_KEYWORD", None),
        ("num_generations", "POSITIONAL_OR_KEYWORD", None),
        ("has_tool_images", "POSITIONAL_OR_KEYWORD", "False"),
    ],
    "_generate_and_score_completions": [
        ("self", "POSITIONAL_OR_KEYWORD", None),
        ("inputs", "POSITIONAL_OR_KEYWORD", None),
    ],
    "_compute_loss": [
        ("self", "POSITIONAL_OR_KEYWORD", None),
        ("model", "POSITIONAL_OR_KEYWORD", None),
        ("inputs", "POSITIONAL_OR_KEYWORD", None),
    ],
    "_save_checkpoint": [
        ("self", "POSITIONAL_OR_KEYWORD", None),
        ("model", "POSITIONAL_OR_KEYWORD", None),
        ("trial", "POSITIONAL_OR_KEYWORD", None),
    ],
}
PINNED_MINOR = "1.16"


def parameters(func) -> list[tuple[str, str, str | None]]:
    """(name, kind, repr of the default or None) of each parameter of `func`."""
    return [
        (p.name, p.kind.name, None if p.default is inspect.Parameter.empty else repr(p.default))
        for p in inspect.signature(func).parameters.values()
    ]


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_overridden_trl_methods_keep_their_recorded_signatures(name):
    assert name in vars(GraceTrainer), f"GraceTrainer no longer overrides {name}: drop it from RECORDED"
    got = parameters(getattr(trl.GRPOTrainer, name))
    assert got == RECORDED[name], (
        f"trl {trl.__version__}: GRPOTrainer.{name} changed its parameters ({got}); port GraceTrainer.{name} to it, "
        "then update RECORDED and the trl pin in pyproject.toml."
    )


def test_every_private_trl_override_is_recorded():
    private = {m for m in vars(GraceTrainer) if m.startswith("_") and not m.startswith("__")}
    assert {m for m in private if hasattr(trl.GRPOTrainer, m)} == set(RECORDED)


def test_pyproject_pins_the_trl_minor_version_that_is_installed():
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    spec = re.search(r'"trl([^"]*)"', text).group(1)
    major, minor = (int(x) for x in PINNED_MINOR.split("."))
    assert spec.startswith(f">={PINNED_MINOR}") and f"<{major}.{minor + 1}" in spec, spec
    installed = version("trl")
    assert installed.startswith(PINNED_MINOR + "."), f"trl {installed}; overrides recorded for {PINNED_MINOR}"
