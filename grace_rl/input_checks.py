"""Checks of the numbers and sizes of a run, used by :mod:`grace_rl.preflight` (and the recipe check by
:func:`grace_rl.train.parse_args`): every numeric option finite and in range, enough rows for one optimizer step,
every text within the model's context, and a recipe file that cannot blow up when parsed.

Each option's range is written once (:mod:`grace_rl.field_rules`): GRACE's own fields declare it on the field
(`checked`), the fields `GraceConfig` inherits from TRL in `TRL_RANGES`; `check_numbers` enforces both with
`field_rules.check_ranges`, as the configs' `__post_init__` does.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grace_rl.data import DataValidationError
from grace_rl.errors import UserError
from grace_rl.field_rules import check_ranges

if TYPE_CHECKING:
    from grace_rl.config import GraceConfig

MAX_CONFIG_BYTES = 1 << 20  # a recipe is a few KB
MAX_CONFIG_NODES = 100_000  # YAML nodes after expanding aliases (a "billion laughs" file has 10^9)


def _field_types(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(type(obj))
    except Exception:  # noqa: BLE001 - an unresolvable annotation: fall back to checking values only
        return {}


def _wants(hint: Any, kind: type) -> bool:
    """`kind` or `kind | None` (not `float | int`, `str | int`, ...)."""
    if hint is kind:
        return True
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return False  # list[str], dict[...], Literal[...]
    return [a for a in typing.get_args(hint) if a is not type(None)] == [kind]


def check_numbers(*configs: Any) -> None:
    """Every numeric option of the dataclasses `configs`: finite (no NaN/inf), an integer where the field is one
    (a YAML `max_steps: 1.7` is not), and in range (:func:`check_ranges`); a string where the field is one; a
    non-empty `instruction`."""
    for config in configs:
        hints = _field_types(config)
        for f in dataclasses.fields(config):
            value = getattr(config, f.name, None)
            values = value if isinstance(value, list) else [value]
            for v in values:
                if isinstance(v, float) and not math.isfinite(v):
                    raise UserError(f"{f.name} is {v!r}; it must be a finite number - fix it in the recipe.")
            if _wants(hints.get(f.name), int) and value is not None and (type(value) is not int):
                raise UserError(f"{f.name} must be an integer, got {value!r} - fix it in the recipe.")
            if _wants(hints.get(f.name), str) and value is not None and not isinstance(value, str):
                raise UserError(f"{f.name} must be a string, got {value!r} - fix it in the recipe (quote it).")
        instruction = getattr(config, "instruction", None)
        if isinstance(instruction, str) and not instruction.strip():
            raise UserError("instruction is empty; it is the system turn asking for a rationale - set it or drop it.")
        check_ranges(config)


def check_enough_rows(rows: list[dict[str, Any]], args: GraceConfig, source: str) -> None:
    """One generation batch needs `generation_batch_size / num_generations` distinct rows; TRL drops an incomplete
    batch, so fewer rows would train zero steps."""
    per_batch = max(1, int(args.generation_batch_size) // int(args.num_generations))
    if len(rows) < per_batch:
        raise DataValidationError(
            f"{source}: {len(rows)} row(s), but one generation batch takes {per_batch} distinct rows "
            f"(generation_batch_size {args.generation_batch_size} / num_generations {args.num_generations}); "
            "training would run 0 steps - add rows (or raise max_train_rows), or lower per_device_train_batch_size."
        )


def check_token_lengths(rows: list[dict[str, Any]], args: GraceConfig, model_path: Path, source: str) -> None:
    """Every text (prompt + rationale budget + template) fits the model's context (`max_position_embeddings`)."""
    from grace_rl.models import load_tokenizer
    from grace_rl.prompts import RationaleTemplate

    config = json.loads((model_path / "config.json").read_text(encoding="utf-8"))
    context = config.get("max_position_embeddings") or config.get("n_positions")
    if not isinstance(context, int) or context < 1:
        return
    budgets = (args.max_completion_length, args.anchor_rationale_tokens or 0, args.corpus_rationale_tokens or 0)
    budget = max(b for b in budgets if isinstance(b, int))
    tokenizer = load_tokenizer(model_path, bool(args.trust_remote_code))
    overhead = len(tokenizer.apply_chat_template(RationaleTemplate(args.instruction)(""), add_generation_prompt=True))
    limit = context - overhead - budget
    if limit < 1:
        raise UserError(
            f"the model's context ({context} tokens) has no room for a text: the template takes {overhead} and the "
            f"rationale budget {budget} - lower max_completion_length / anchor_rationale_tokens."
        )
    for n, row in enumerate(rows, start=1):
        fields = [("query", row["query"]), ("positive", row["positive"])]
        fields += [(f"negatives[{k}]", t) for k, t in enumerate(row.get("negatives") or [])]
        for name, text in fields:
            if len(text.encode("utf-8")) <= limit:  # a byte-level BPE token holds >= 1 byte: cannot exceed
                continue
            tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            if tokens > limit:
                raise DataValidationError(
                    f"{source}: row {n} ({row['prompt_id']}): field '{name}' is {tokens} tokens; with the template "
                    f"({overhead}) and the rationale budget ({budget}) it exceeds the model's context of {context} - "
                    f"shorten it to at most {limit} tokens."
                )


def list_keys(*config_types: type) -> dict[str, bool]:
    """The list-typed fields (`list[...]` or `list[...] | None`) of the dataclasses `config_types`, as
    `{name: nullable}`."""
    keys = {}
    for config_type in config_types:
        for name, hint in typing.get_type_hints(config_type).items():
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            if typing.get_origin(hint) is list:
                keys[name] = False
            elif typing.get_origin(hint) in (typing.Union, types.UnionType) and all(
                typing.get_origin(a) is list for a in args
            ):  # not `str | list[str]` (report_to: none)
                keys[name] = True
    return keys


def check_config_file(path: str | Path, list_fields: dict[str, bool] | None = None) -> None:
    """A YAML recipe before TRL parses it: a regular file of at most :data:`MAX_CONFIG_BYTES`, UTF-8, at most
    :data:`MAX_CONFIG_NODES` nodes once aliases are expanded (anchors are composed, not expanded, to count), no key
    twice in a mapping (YAML would keep the last value silently), and each of `list_fields` (`{key: nullable}`) a
    flat list (a scalar or a nested list is refused: TRL would pass it on as it is)."""
    import yaml

    from grace_rl.run_files import check_regular_file

    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--config {path} does not exist; pass the recipe's path.")
    check_regular_file(path, "--config")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise UserError(f"{path}: {size} bytes; a recipe is at most {MAX_CONFIG_BYTES} bytes - is it the right file?")
    try:
        node = yaml.compose(path.read_bytes().decode("utf-8"), Loader=yaml.SafeLoader)
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start + 1}) - save the recipe as UTF-8.") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise UserError(f"{where}: not valid YAML ({problem}) - fix the recipe.") from err
    total = _expanded_size(node, {})
    if total > MAX_CONFIG_NODES:
        raise UserError(
            f"{path}: expands to {total:.3g} YAML nodes through anchors/aliases (max {MAX_CONFIG_NODES}) - a recipe "
            "needs no such nesting; write the values out."
        )
    _check_duplicate_keys(node, path, set())
    if isinstance(node, yaml.MappingNode) and list_fields:
        _check_list_shapes(node, path, list_fields)


ALL_LINEAR = "all-linear"  # the one scalar `lora_target_modules` takes (peft: every linear layer)


def _check_duplicate_keys(node: Any, path: Path, seen_nodes: set[int]) -> None:
    """Refuse a mapping that holds a key twice, naming `file:line` of the second one."""
    import yaml

    if id(node) in seen_nodes:
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if key.value in first:
                    raise UserError(
                        f"{path}:{key.start_mark.line + 1}: key {key.value!r} is given twice (first on line "
                        f"{first[key.value]}); YAML would keep the last value silently - keep one."
                    )
                first[key.value] = key.start_mark.line + 1
            _check_duplicate_keys(value, path, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for child in node.value:
            _check_duplicate_keys(child, path, seen_nodes)


def _check_list_shapes(node: Any, path: Path, list_fields: dict[str, bool]) -> None:
    """Each list-typed key holds a flat list of scalars (or null where the field is optional)."""
    import yaml

    for key, value in node.value:
        name = getattr(key, "value", None)
        if name not in list_fields:
            continue
        where = f"{path}:{key.start_mark.line + 1}"
        if isinstance(value, yaml.ScalarNode):
            if value.tag == "tag:yaml.org,2002:null" and list_fields[name]:
                continue
            if name == "lora_target_modules" and value.value == ALL_LINEAR:
                continue
            raise UserError(
                f"{where}: {name} must be a list, got the single value {value.value!r} - write it as a list: "
                f"{name}: [{value.value}]" + (f" (or {ALL_LINEAR})" if name == "lora_target_modules" else "") + "."
            )
        if not isinstance(value, yaml.SequenceNode):
            raise UserError(f"{where}: {name} must be a list of values, got a mapping - write it as [a, b, ...].")
        nested = [child for child in value.value if not isinstance(child, yaml.ScalarNode)]
        if nested:
            raise UserError(
                f"{where}: {name} must be a flat list of values, but item {value.value.index(nested[0]) + 1} is a "
                f"{'list' if isinstance(nested[0], yaml.SequenceNode) else 'mapping'} - write it as [a, b, ...]."
            )


def _expanded_size(node: Any, memo: dict[int, int]) -> int:
    """Nodes of `node` with every alias expanded, memoised per shared node (linear in the composed graph)."""
    import yaml

    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = MAX_CONFIG_NODES + 1  # a recursive alias counts as too big
    if isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        total = 1
    memo[key] = min(total, 10**15)
    return memo[key]
