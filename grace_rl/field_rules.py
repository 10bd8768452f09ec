"""Value rules of config fields, each written once: GRACE's own fields declare theirs on the field
(:func:`checked`, kept in the field's metadata under :data:`CHECK`), the fields `GraceConfig` inherits from TRL's
`GRPOConfig` / transformers' `TrainingArguments` in :data:`TRL_RANGES`; :func:`check_ranges` enforces both.

Called from the configs' `__post_init__` (`grace_rl.config`), the recipe check and the preflight
(`grace_rl.input_checks.check_numbers`). A leaf module (standard library only), so both sides can import it.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable
from dataclasses import field
from typing import Any

from grace_rl.errors import UserError

CHECK = "check"  # field-metadata key of a value rule `(test, rule)`: see `checked`


def checked(test: Callable[[Any], bool], rule: str, help: str, **kwargs: Any) -> Any:
    """A dataclass field whose value (unless `None`) must pass `test`, described by `rule` (e.g. `"> 0"`).

    The one source of the field's rule: `__post_init__`, the recipe check and the preflight all enforce it through
    :func:`check_ranges`, which fails with `"<field> must be <rule>, got <value>"`; a new field declared with
    `checked` is checked everywhere without touching `input_checks` or this module. `kwargs` go to `field`
    (`default=...`). NaN fails every comparison, so a plain `v > 0` refuses it; add `math.isfinite(v)` to refuse inf.
    """
    return field(metadata={"help": help, CHECK: (test, rule)}, **kwargs)


def one_of(choices: tuple[str, ...]) -> tuple[Callable[[Any], bool], str]:
    """The `(test, rule)` of a field that takes one of `choices`."""
    return (lambda v: v in choices), f"one of {choices}"


def finite_and(test: Callable[[float], bool]) -> Callable[[Any], bool]:
    """`test`, and refuse NaN and inf."""
    return lambda v: math.isfinite(v) and test(v)


# Inherited fields only (TRL's GRPOConfig, transformers' TrainingArguments): GRACE's own fields declare their rule
# with `grace_rl.config.checked`. (field, test, what it must be); NaN fails every comparison, so each test is false
# for NaN.
TRL_RANGES: list[tuple[str, typing.Callable[[Any], bool], str]] = [
    ("learning_rate", lambda v: v >= 0, ">= 0"),  # 0 is allowed: tests pin the weights with it
    ("max_completion_length", lambda v: v >= 1, ">= 1 token"),
    ("temperature", lambda v: v > 0, "> 0 (GRPO samples the rollouts)"),
    ("top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("beta", lambda v: v >= 0, ">= 0"),
    ("weight_decay", lambda v: v >= 0, ">= 0"),
    ("warmup_ratio", lambda v: v is None or 0 <= v <= 1, "in [0, 1]"),  # a float ratio only in older transformers
    ("max_grad_norm", lambda v: v >= 0, ">= 0"),
    ("num_train_epochs", lambda v: v > 0, "> 0"),
    ("max_steps", lambda v: v >= 1 or v == -1, ">= 1 (or -1: num_train_epochs decides)"),
    ("per_device_train_batch_size", lambda v: v >= 1, ">= 1"),
    ("gradient_accumulation_steps", lambda v: v >= 1, ">= 1"),
    ("num_iterations", lambda v: v >= 1, ">= 1"),
    ("logging_steps", lambda v: v > 0, "> 0"),
    ("save_steps", lambda v: v > 0, "> 0"),
]


def _rules(config: Any) -> list[tuple[str, typing.Callable[[Any], bool], str, bool]]:
    """`(field, test, rule, own)` of every checked field of the dataclass `config`: its `checked` metadata
    (`own`), else its :data:`TRL_RANGES` entry."""
    inherited = {name: (test, rule) for name, test, rule in TRL_RANGES}
    rules = []
    for f in dataclasses.fields(config):
        if CHECK in f.metadata:
            rules.append((f.name, *f.metadata[CHECK], True))
        elif f.name in inherited:
            rules.append((f.name, *inherited[f.name], False))
    return rules


def check_ranges(config: Any) -> None:
    """Each field of the dataclass `config` that has a rule passes it, else one line: `"<field> must be <rule>, got
    <value> - fix it ..."` (a NaN/inf whose rule does not speak of finiteness: `"<field> is nan; it must be a finite
    number"`). A `checked` field's `None` is its documented default and passes; an inherited field's `None` meets its
    :data:`TRL_RANGES` test (`max_completion_length: null` is refused)."""
    for name, test, rule, own in _rules(config):
        value = getattr(config, name, None)
        if value is None and own:  # GRACE's optional fields: None = the documented default
            continue
        try:
            ok = bool(test(value))
        except TypeError:  # a value of another type (e.g. a string for a number)
            ok = False
        if not ok and isinstance(value, float) and not math.isfinite(value) and "finite" not in rule:
            raise UserError(f"{name} is {value!r}; it must be a finite number - fix it in the recipe.")
        if not ok:
            raise UserError(f"{name} must be {rule}, got {value!r} - fix it in the recipe.")
