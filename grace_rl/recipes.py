"""Reading a YAML recipe, with `base:` resolved: a recipe can be another recipe plus the keys it changes.

    # configs/experiments/hn4.yaml
    base: lora.yaml              # relative to this file; the base may have a base of its own
    output_dir: runs/experiments/hn4
    hard_negative_weight: 4.0    # the lever

The base's keys are overridden by the file's (a whole value each: recipes are flat, a list is replaced, not merged);
`base` itself is dropped. Every file of the chain passes :func:`grace_rl.input_checks.check_config_file` (size, YAML
bombs, duplicate keys, list shapes) before it is read; a missing base or a cycle is one line naming the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grace_rl.errors import UserError

BASE_KEY = "base"


def load_recipe(path: str | Path, list_fields: dict[str, bool] | None = None) -> dict[str, Any]:
    """The recipe at `path` as one flat mapping, its `base:` chain resolved (the nearest file wins a key).

    Args:
        path: the recipe (`--config`).
        list_fields: `{key: nullable}` of the list-typed keys, checked in every file of the chain
            (:func:`grace_rl.input_checks.list_keys`).

    Returns:
        `dict[str, Any]`: the keys TRL's parser sets as defaults (`env` included, `base` not).
    """
    chain: list[Path] = []
    layers: list[dict[str, Any]] = []
    current: Path | None = Path(path).expanduser()
    while current is not None:
        resolved = current.resolve()
        if resolved in chain:
            loop = " -> ".join(str(p) for p in [*chain, resolved])
            raise UserError(f"{current}: recipe bases form a cycle ({loop}) - point one base elsewhere.")
        if chain and not current.exists():
            raise UserError(
                f"{chain[-1]}: base {current} does not exist - fix the path (relative to {chain[-1].parent})."
            )
        recipe = _read_one(current, list_fields)
        chain.append(resolved)
        base = recipe.pop(BASE_KEY, None)
        layers.append(recipe)
        if base is None:
            current = None
        elif not isinstance(base, str) or not base.strip():
            raise UserError(f"{current}: base must be the path of another recipe, got {base!r} - fix it.")
        else:
            current = current.parent / Path(base).expanduser()
    merged: dict[str, Any] = {}
    for layer in reversed(layers):  # the last base first, the file named on the command line last
        merged.update(layer)
    return merged


def _read_one(path: Path, list_fields: dict[str, bool] | None) -> dict[str, Any]:
    import yaml

    from grace_rl.input_checks import check_config_file

    check_config_file(path, list_fields)
    recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(recipe, dict):
        got = "nothing" if recipe is None else f"a {type(recipe).__name__}"
        raise UserError(f"{path}: a recipe must contain a YAML mapping (key: value lines), got {got} - fix it.")
    return recipe
