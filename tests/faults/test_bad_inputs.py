"""Bad inputs fail before training, through the real entry point, with a message naming the file, row, field and fix,
and nothing is written to the output directory.

Decision recorded here: an empty ``negatives`` list is allowed (same as leaving the field out: the row's contrast comes
from in-batch negatives); it is refused only when the ``hard_negative`` term is configured and no row has any.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from grace_rl.models import resolve_model_path
from grace_rl.resume import RUN_FILE, run_fingerprint
from grace_rl.train import main, parse_args

pytestmark = pytest.mark.faults


@dataclass
class Ctx:
    tmp: Path
    model_dir: Path
    rows: list[dict]
    recipe: Callable[..., list[str]]
    jsonl: Callable[[Path, list], Path]
    dcg: tuple[Path, Path]
    dcg_args: Callable[..., dict]

    @property
    def out(self) -> Path:
        return self.tmp / "run"

    def argv(self, rows_path: Path | None = None, **overrides) -> list[str]:
        return self.recipe(self.tmp, self.model_dir, rows_path or self.good_rows(), **overrides)

    def good_rows(self) -> Path:
        return self.jsonl(self.tmp / "rows.jsonl", self.rows)

    def bad_row(self, change: Callable[[dict], object], **overrides) -> list[str]:
        """Rows file whose row 3 is changed by ``change`` (which may return a replacement row)."""
        rows = [dict(r) for r in self.rows]
        replaced = change(rows[2])
        if replaced is not None:
            rows[2] = replaced
        return self.argv(self.jsonl(self.tmp / "rows.jsonl", rows), **overrides)

    def model_copy(self, edit: Callable[[Path], None]) -> Path:
        target = self.tmp / "model"
        shutil.copytree(self.model_dir, target)
        edit(target)
        return target


def _set(field, value):
    return lambda row: row.__setitem__(field, value)


def _drop(field):
    return lambda row: row.__delitem__(field)


def _dcg_rows(ctx: Ctx, change) -> list[str]:
    rows_path, corpus = ctx.dcg
    rows = [json.loads(x) for x in rows_path.read_text().splitlines()]
    change(rows[2])
    return ctx.argv(ctx.jsonl(ctx.tmp / "rows.jsonl", rows), **ctx.dcg_args(corpus))


def _unsup(ctx: Ctx, rows: list) -> list[str]:
    return ctx.argv(ctx.jsonl(ctx.tmp / "texts.jsonl", rows), task="unsupervised")


def _write_config(text: str):
    return lambda d: (d / "config.json").write_text(text)


def _custom_code(d: Path) -> None:
    config = json.loads((d / "config.json").read_text())
    config.update(model_type="my_secret_arch", auto_map={"AutoModelForCausalLM": "modeling_secret.SecretLM"})
    (d / "config.json").write_text(json.dumps(config))


def _bin_only(d: Path) -> None:
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"a pickle that must never be loaded")


def _truncate_weights(d: Path) -> None:
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])


def _no_tokenizer(d: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        (d / name).unlink(missing_ok=True)


def _other_run(ctx: Ctx) -> list[str]:
    argv = ctx.argv()
    script_args, args, model_args = parse_args(argv)
    fingerprint = run_fingerprint(script_args, args, model_args, resolve_model_path(str(ctx.model_dir)))
    ctx.out.mkdir()
    (ctx.out / RUN_FILE).write_text(json.dumps({"format": 1, "fingerprint": {**fingerprint, "seed": 999}}))
    (ctx.out / "rationales.jsonl").write_text('{"step": 1}\n')
    return argv


def _unmarked_run(ctx: Ctx) -> list[str]:
    (ctx.out / "checkpoint-1").mkdir(parents=True)
    return ctx.argv()


def _checkpoint_elsewhere(ctx: Ctx) -> list[str]:
    elsewhere = ctx.tmp / "other" / "checkpoint-1"
    elsewhere.mkdir(parents=True)
    return ctx.argv(resume_from_checkpoint=str(elsewhere))


def _incomplete_checkpoint(ctx: Ctx) -> list[str]:
    (ctx.out / "checkpoint-2").mkdir(parents=True)
    (ctx.out / "checkpoint-2" / "trainer_state.json").write_text("{}")
    return ctx.argv(resume_from_checkpoint=str(ctx.out / "checkpoint-2"))


def _resume_and_overwrite(ctx: Ctx) -> list[str]:
    _incomplete_checkpoint(ctx)
    (ctx.out / "checkpoint-2" / "grace_checkpoint.json").write_text("{}")  # now complete
    return ctx.argv(resume_from_checkpoint="true", overwrite_output_dir=True)


def _output_is_file(ctx: Ctx) -> list[str]:
    ctx.out.write_text("not a directory")
    return ctx.argv()


# (id, build argv from the context, substrings the message must contain: where + what + fix)
CASES: list[tuple[str, Callable[[Ctx], list[str]], list[str]]] = [
    # ---- data rows -------------------------------------------------------------------------------------------------
    ("empty-query", lambda c: c.bad_row(_set("query", "")), ["rows.jsonl", "row 3", "'query'", "fill it in"]),
    (
        "whitespace-positive",
        lambda c: c.bad_row(_set("positive", " \t ")),
        ["rows.jsonl", "row 3", "'positive'", "empty or whitespace", "remove the row"],
    ),
    ("non-string-query", lambda c: c.bad_row(_set("query", 42)), ["row 3", "'query'", "must be a string, got int"]),
    (
        "over-long-positive",
        lambda c: c.bad_row(_set("positive", "x" * 20_001)),
        ["row 3", "'positive'", "20001 characters", "shorten it"],
    ),
    ("missing-column", lambda c: c.bad_row(_drop("positive")), ["row 3", "missing field 'positive'", "need"]),
    ("extra-column", lambda c: c.bad_row(_set("label", 1)), ["row 3", "unknown field(s) ['label']", "allowed"]),
    (
        "negatives-not-a-list",
        lambda c: c.bad_row(_set("negatives", "one text")),
        ["row 3", "'negatives'", "must be a list of strings"],
    ),
    (
        "empty-text-in-negatives",
        lambda c: c.bad_row(_set("negatives", ["fine", "  "])),
        ["row 3", "'negatives[1]'", "empty or whitespace"],
    ),
    ("duplicate-ids", lambda c: c.bad_row(_set("id", c.rows[0]["id"])), ["row 3", "duplicate id", "must be unique"]),
    ("row-not-an-object", lambda c: c.bad_row(lambda r: ["a", "list"]), ["row 3", "expected an object", "'query'"]),
    (
        "invalid-json-line",
        lambda c: c.argv(
            _raw(c, '{"query": "a", "positive": "b"}\n{"query": "c", "positive": "d"}\n{"query": oops}\n')
        ),
        ["rows.jsonl", "line 3", "not valid JSON"],
    ),
    ("no-rows", lambda c: c.argv(_raw(c, "\n")), ["rows.jsonl", "no rows"]),
    (
        "positive-ids-not-in-corpus",
        lambda c: _dcg_rows(c, _set("positive_ids", ["doc-missing"])),
        ["rows.jsonl", "row 3", "positive_ids ['doc-missing']", "fix the ids or the corpus"],
    ),
    (
        "positive-ids-not-a-list",
        lambda c: _dcg_rows(c, _set("positive_ids", "doc-0000")),
        ["row 3", "'positive_ids'", "must be a list of corpus document ids"],
    ),
    (
        "hard-negative-term-without-negatives",
        lambda c: c.argv(
            c.jsonl(c.tmp / "rows.jsonl", [{**r, "negatives": []} for r in c.rows]),
            reward_terms=["contrastive", "hard_negative"],
            term_weights=[1.0, 0.5],
        ),
        ["rows.jsonl", "'negatives'", "hard_negative", "drop the term"],
    ),
    (
        "unsupervised-non-string-text",
        lambda c: _unsup(c, [{"text": "a"}, {"text": "b"}, {"text": None}]),
        ["texts.jsonl", "row 3", "'text'", "must be a string"],
    ),
    (
        "unsupervised-missing-text-column",
        lambda c: _unsup(c, [{"body": "a"}]),
        ["texts.jsonl", "row 1", "missing field 'text'", "set text_column"],
    ),
    ("dataset-missing", lambda c: c.argv(c.tmp / "nope.jsonl"), ["nope.jsonl", "does not exist"]),
    # ---- config ----------------------------------------------------------------------------------------------------
    (
        "unknown-reward-name",
        lambda c: c.argv(reward_terms=["contrastive", "bogus"], term_weights=[1.0, 1.0]),
        ["Unknown reward term(s) ['bogus']", "choose from"],
    ),
    (
        "weights-count-mismatch",
        lambda c: c.argv(term_weights=[1.0, 0.1]),
        ["term_weights has 2 values", "reward_terms has 3", "one weight per term"],
    ),
    ("temperature-zero", lambda c: c.argv(temperature=0.0), ["temperature must be > 0", "got 0.0"]),
    (
        "contrastive-temperature-negative",
        lambda c: c.argv(contrastive_temperature=-0.1),
        ["contrastive_temperature must be > 0", "-0.1"],
    ),
    (
        "hard-negative-weight-negative",
        lambda c: c.argv(hard_negative_weight=-2.0),
        ["hard_negative_weight", "> 0", "-2.0"],
    ),
    (
        "num-generations-one",
        lambda c: c.argv(num_generations=1),
        ["num_generations must be >= 2", "got 1", "set num_generations: 2 or more"],
    ),
    (
        "refresh-fraction-zero",
        lambda c: c.argv(c.dcg[0], **c.dcg_args(c.dcg[1], refresh_fraction=0.0)),
        ["refresh_fraction must be in (0, 1]", "got 0.0"],
    ),
    (
        "refresh-fraction-above-one",
        lambda c: c.argv(c.dcg[0], **c.dcg_args(c.dcg[1], refresh_fraction=1.5)),
        ["refresh_fraction must be in (0, 1]", "got 1.5"],
    ),
    (
        "dcg-cutoff-deeper-than-search",
        lambda c: c.argv(c.dcg[0], **c.dcg_args(c.dcg[1], dcg_k=20, search_depth=10)),
        ["dcg_k=20", "search_depth=10", "raise search_depth or lower dcg_k"],
    ),
    (
        "eval-sts-path-missing",
        lambda c: c.argv(eval_sts_path=str(c.tmp / "sts.tsv")),
        ["eval_sts_path", "sts.tsv", "does not exist", "fix the path"],
    ),
    # ---- model directory -------------------------------------------------------------------------------------------
    (
        "model-dir-missing",
        lambda c: c.recipe(c.tmp, c.tmp / "no-model", c.good_rows()),
        ["no-model", "neither the default id", "pass a local HF model directory"],
    ),
    (
        "model-config-garbage",
        lambda c: c.recipe(c.tmp, c.model_copy(_write_config("{not json")), c.good_rows()),
        ["model/config.json", "not valid JSON", "restore the model's config.json"],
    ),
    (
        "model-without-safetensors",
        lambda c: c.recipe(c.tmp, c.model_copy(lambda d: (d / "model.safetensors").unlink()), c.good_rows()),
        ["model", "no model.safetensors", "copy the weights"],
    ),
    (
        "model-with-pickle-weights-only",
        lambda c: c.recipe(c.tmp, c.model_copy(_bin_only), c.good_rows()),
        ["only pickle weights", "pytorch_model.bin", "safe_serialization=True"],
    ),
    (
        "model-weights-truncated",
        lambda c: c.recipe(c.tmp, c.model_copy(_truncate_weights), c.good_rows()),
        ["model.safetensors", "not a readable safetensors file", "re-save or re-copy"],
    ),
    (
        "model-custom-code-untrusted",
        lambda c: c.recipe(c.tmp, c.model_copy(_custom_code), c.good_rows()),
        ["config.json", "custom code", "my_secret_arch", "trust_remote_code: true"],
    ),
    (
        "model-without-tokenizer",
        lambda c: c.recipe(c.tmp, c.model_copy(_no_tokenizer), c.good_rows()),
        ["model", "no tokenizer files", "save the tokenizer there"],
    ),
    # ---- output directory and resume -------------------------------------------------------------------------------
    ("output-dir-holds-another-run", _other_run, ["run", "holds a different run", "seed", "--overwrite_output_dir"]),
    (
        "output-dir-holds-a-run",
        _unmarked_run,
        ["already holds a run", "checkpoint-1", "--resume_from_checkpoint true"],
    ),
    ("output-dir-is-a-file", _output_is_file, ["output_dir", "is a file", "choose another output_dir"]),
    (
        "resume-from-another-dir",
        _checkpoint_elsewhere,
        ["other/checkpoint-1", "is not a checkpoint of output_dir", "set output_dir"],
    ),
    ("resume-incomplete-checkpoint", _incomplete_checkpoint, ["checkpoint-2", "is incomplete", "resume from"]),
    (
        "resume-without-checkpoint",
        lambda c: c.argv(resume_from_checkpoint="true"),
        ["no complete checkpoint", "--resume_from_checkpoint null"],
    ),
    (
        "resume-and-overwrite",
        _resume_and_overwrite,
        ["resume_from_checkpoint and overwrite_output_dir", "Pass only one"],
    ),
]


def _raw(ctx: Ctx, text: str) -> Path:
    path = ctx.tmp / "rows.jsonl"
    path.write_text(text)
    return path


def _snapshot(path: Path) -> object:
    if not path.exists():
        return None
    if path.is_file():
        return ("file", path.stat().st_size, path.stat().st_mtime_ns)
    return sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*"))


@pytest.mark.parametrize("build, needles", [pytest.param(b, n, id=i) for i, b, n in CASES])
def test_bad_input_fails_up_front_and_writes_nothing(
    build, needles, tmp_path, tiny_model_dir, demo_rows, recipe, jsonl, dcg_data, dcg_args, tally
):
    rows = [json.loads(x) for x in demo_rows.read_text().splitlines()[:6]]
    ctx = Ctx(tmp_path, tiny_model_dir, rows, recipe, jsonl, dcg_data, dcg_args)
    argv = build(ctx)
    before = _snapshot(ctx.out)
    with pytest.raises((ValueError, OSError)) as info:
        main(*parse_args(argv))
    message = str(info.value)
    missing = [n for n in needles if n not in message]
    assert not missing, f"message lacks {missing}: {message}"
    assert _snapshot(ctx.out) == before, "the output directory changed"
    tally.bad_input()


def test_empty_negatives_are_allowed(tmp_path, demo_rows, jsonl):
    """The documented decision: ``negatives: []`` is the same as no negatives field."""
    from grace_rl.data import load_supervised

    rows = [{**json.loads(x), "negatives": []} for x in demo_rows.read_text().splitlines()[:3]]
    loaded = load_supervised(jsonl(tmp_path / "rows.jsonl", rows))
    assert [r["negatives"] for r in loaded] == [[], [], []]
