"""One source for each check: a field's rule lives in its metadata (`grace_rl.field_rules.checked`) and drives
every check of it; path checks live in the preflight; recipes can be another recipe plus the keys they change
(`base:`)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from trl import ModelConfig

from grace_rl.config import GraceConfig, GraceScriptArguments
from grace_rl.errors import UserError
from grace_rl.field_rules import CHECK, TRL_RANGES, checked
from grace_rl.input_checks import check_numbers
from grace_rl.preflight import check_paths
from grace_rl.recipes import load_recipe
from grace_rl.train import _RecipeParser, parse_args

REPO = Path(__file__).resolve().parents[2]
BASE = dict(output_dir="/tmp/x", use_cpu=True, bf16=False, per_device_train_batch_size=4, num_generations=2)


@dataclass
class _WithNewField(GraceConfig):
    """A config with one more field, declared with a rule and nothing else."""

    foo_count: int = checked(lambda v: v >= 3, ">= 3 (at least three foos)", "Foos per bar.", default=3)


def _rule(name: str) -> str:
    return next(f for f in dataclasses.fields(GraceConfig) if f.name == name).metadata[CHECK][1]


@pytest.mark.parametrize(
    ("name", "bad"),
    [("hard_negative_weight", 0.0), ("embedding_loss_weight", -1.0), ("anchor_mode", "both"), ("ivf_nlist", 0)],
)
def test_a_bad_value_is_refused_with_the_rule_of_its_metadata(name, bad):
    with pytest.raises(UserError) as err:
        GraceConfig(**BASE, **{name: bad})
    assert str(err.value) == f"{name} must be {_rule(name)}, got {bad!r} - fix it in the recipe."


def test_the_same_rule_refuses_a_value_set_after_construction():
    """`check_numbers` (recipe check, preflight) reads the same metadata, not a table of its own."""
    config = GraceConfig(**BASE)
    config.contrastive_temperature = -0.5
    with pytest.raises(UserError, match=r"contrastive_temperature must be > 0, got -0.5"):
        check_numbers(config)


def test_a_new_field_with_a_rule_is_checked_everywhere_without_touching_input_checks(tmp_path):
    assert _WithNewField(**BASE, foo_count=5).foo_count == 5
    with pytest.raises(UserError, match=r"foo_count must be >= 3 \(at least three foos\), got 1"):
        _WithNewField(**BASE, foo_count=1)
    config = _WithNewField(**BASE)
    config.foo_count = 2
    with pytest.raises(UserError, match="foo_count must be >= 3"):
        check_numbers(config)
    recipe = tmp_path / "recipe.yaml"  # through the recipe parser: argparse never sees the rule
    recipe.write_text(yaml.safe_dump({**BASE, "report_to": "none", "foo_count": 4}))
    parser = _RecipeParser((GraceScriptArguments, _WithNewField, ModelConfig))
    assert parser.parse_args_and_config(["--config", str(recipe)])[1].foo_count == 4
    with pytest.raises(UserError, match="foo_count must be >= 3"):
        _RecipeParser((GraceScriptArguments, _WithNewField, ModelConfig)).parse_args_and_config(
            ["--config", str(recipe), "--foo_count", "0"]
        )


def test_the_trl_table_holds_only_inherited_fields():
    own = set(GraceConfig.__annotations__)
    names = {name for name, _, _ in TRL_RANGES}
    assert not names & own, f"declare these rules on GraceConfig's fields instead: {sorted(names & own)}"


def test_the_script_arguments_rules_come_from_their_metadata():
    with pytest.raises(UserError, match=r"task must be one of \('supervised', 'unsupervised'\), got 'both'"):
        GraceScriptArguments(task="both")
    with pytest.raises(UserError, match="eval_sts_limit must be >= 2 pairs, got 1"):
        GraceScriptArguments(eval_sts_limit=1)


def test_a_missing_corpus_is_a_preflight_error_not_a_config_error(tmp_path):
    missing = str(tmp_path / "nope.jsonl")
    config = GraceConfig(**BASE, reward_terms=["contrastive", "dcg"], term_weights=[1.0, 1.0], corpus_path=missing)
    script_args = SimpleNamespace(dataset_path=None, eval_sts_path=None)
    with pytest.raises(FileNotFoundError, match=r"corpus_path .*nope.jsonl does not exist"):
        check_paths(script_args, config)


# ---- recipes as overrides (`base:`) ------------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_file_overrides_its_base_and_base_is_dropped(tmp_path):
    _write(tmp_path / "a.yaml", "learning_rate: 1.0e-4\nmax_steps: 5\nreward_terms: [contrastive, margin]\n")
    child = _write(tmp_path / "b.yaml", "base: a.yaml\nmax_steps: 7\nreward_terms: [contrastive]\n")
    assert load_recipe(child) == {"learning_rate": 1.0e-4, "max_steps": 7, "reward_terms": ["contrastive"]}


def test_a_chain_resolves_nearest_first_with_paths_relative_to_each_file(tmp_path):
    _write(tmp_path / "root.yaml", "seed: 0\nmax_steps: 5\nbeta: 0.0\n")
    _write(tmp_path / "levers" / "mid.yaml", "base: ../root.yaml\nmax_steps: 6\nbeta: 0.1\n")
    leaf = _write(tmp_path / "levers" / "deep" / "leaf.yaml", "base: ../mid.yaml\nbeta: 0.2\n")
    assert load_recipe(leaf) == {"seed": 0, "max_steps": 6, "beta": 0.2}


def test_a_cycle_is_refused_naming_the_files(tmp_path):
    _write(tmp_path / "a.yaml", "base: b.yaml\nseed: 1\n")
    _write(tmp_path / "b.yaml", "base: c.yaml\nseed: 2\n")
    _write(tmp_path / "c.yaml", "base: a.yaml\nseed: 3\n")
    with pytest.raises(UserError, match=r"cycle .*a\.yaml -> .*b\.yaml -> .*c\.yaml -> .*a\.yaml"):
        load_recipe(tmp_path / "a.yaml")
    _write(tmp_path / "self.yaml", "base: ./self.yaml\n")
    with pytest.raises(UserError, match="cycle"):
        load_recipe(tmp_path / "self.yaml")


def test_a_missing_or_malformed_base_is_one_line_naming_the_file(tmp_path):
    child = _write(tmp_path / "sub" / "child.yaml", "base: nope.yaml\nseed: 1\n")
    with pytest.raises(UserError, match=r"child\.yaml: base .*sub/nope\.yaml does not exist"):
        load_recipe(child)
    _write(child, "base: [a.yaml]\n")
    with pytest.raises(UserError, match="base must be the path of another recipe"):
        load_recipe(child)


def test_every_file_of_the_chain_is_checked(tmp_path):
    _write(tmp_path / "a.yaml", "seed: 0\nseed: 1\n")  # a duplicate key in the base, not in the file named
    child = _write(tmp_path / "b.yaml", "base: a.yaml\nbeta: 0.1\n")
    with pytest.raises(UserError, match=r"a\.yaml:2: key 'seed' is given twice"):
        load_recipe(child)


def test_the_training_parser_reads_the_resolved_recipe(tmp_path):
    _write(tmp_path / "a.yaml", yaml.safe_dump({**BASE, "report_to": "none", "max_steps": 3, "beta": 0.0}))
    child = _write(tmp_path / "b.yaml", "base: a.yaml\nbeta: 0.04\nhard_negative_weight: 4.0\n")
    _, args, _ = parse_args(["--config", str(child), "--max_steps", "9"])  # the command line still wins
    assert (args.beta, args.hard_negative_weight, args.max_steps, args.num_generations) == (0.04, 4.0, 9, 2)
    bad = _write(tmp_path / "c.yaml", "base: b.yaml\nhard_negative_weight: 0.0\n")
    with pytest.raises(
        UserError, match=re.escape(f"hard_negative_weight must be {_rule('hard_negative_weight')}, got 0.0")
    ):
        parse_args(["--config", str(bad)])


EXPERIMENTS = sorted((REPO / "configs" / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("recipe", EXPERIMENTS, ids=lambda p: p.name)
def test_every_experiment_recipe_resolves_to_a_complete_recipe(recipe):
    """Each lever file resolves (no `base` left, a model and a dataset from its chain); the config checks run on
    the parsed values in tests/grace_rl/test_shipped_recipes.py."""
    resolved = load_recipe(recipe)
    assert "base" not in resolved and resolved["model_name_or_path"] and resolved["dataset_path"]
    assert resolved["output_dir"] == f"runs/experiments/{recipe.stem}"  # each lever writes its own run
    config = GraceConfig(
        **{k: v for k, v in resolved.items() if k in {f.name for f in dataclasses.fields(GraceConfig)}}
        | {"output_dir": "/tmp/x"}
    )
    check_numbers(config)
