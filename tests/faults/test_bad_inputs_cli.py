"""Bad inputs of issue 14, through the real entry point (`grace-rl train`, in process): each fails in the preflight
with ONE line `error: <file>[:<line>]: <what> - <what to do>` on stderr and exit status 2, and the output directory
is left exactly as it was (no run marker either, so a fixed rerun is not refused).

Classes (issue 14): 1 a failed start must not block the output directory; 2 no exit 0 on a wrong or empty result;
3 no user file overwritten; 4 readers name the file and line; 6 limits (context, YAML) enforced; 7 one line, exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grace_rl.cli import main as cli_main
from grace_rl.preflight import preflight
from grace_rl.resume import RUN_FILE, start_run
from grace_rl.train import load_rows_for_task, parse_args

from .test_bad_inputs import Ctx, _raw, _set, _snapshot

pytestmark = pytest.mark.faults
REPO = Path(__file__).resolve().parents[2]


def _sts(ctx: Ctx, lines: list[str]) -> str:
    path = ctx.tmp / "sts.tsv"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def _stsb(score: str, n: int = 1) -> str:
    return f"main-captions\tMSRvid\t2012test\t{n:04d}\t{score}\tA man plays a guitar {n}.\tA man plays music {n}."


def _user_files(ctx: Ctx) -> list[str]:
    ctx.out.mkdir()
    (ctx.out / "README.md").write_text("my notes\n")
    (ctx.out / "tokenizer_config.json").write_text("{}")
    return ctx.argv()


def _bytes_rows(ctx: Ctx, name: str, data: bytes) -> Path:
    path = ctx.tmp / name
    path.write_bytes(data)
    return path


def _jsonl_bytes(ctx: Ctx, bad_line: bytes) -> Path:
    good = [json.dumps(r).encode() for r in ctx.rows[:2]]
    return _bytes_rows(ctx, "rows.jsonl", b"\n".join([*good, bad_line]) + b"\n")


def _recipe_text(ctx: Ctx, text: str | bytes) -> list[str]:
    argv = ctx.argv()
    path = Path(argv[1])
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return argv


def _bomb() -> str:
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        name, prev = chr(97 + i), chr(96 + i)
        levels.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(levels) + "\n"


def _long_text(ctx: Ctx) -> list[str]:
    # ~600 tokens in 2,400 characters (far below the 20,000-character cut): over the tiny model's 512-token context
    text = " ".join(f"w{i}" for i in range(600))
    return ctx.bad_row(_set("positive", text))


def _recipe_plus(ctx: Ctx, extra: str, **overrides) -> list[str]:
    argv = ctx.argv(**overrides)
    path = Path(argv[1])
    path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")
    return argv


def _null_ids(ctx: Ctx) -> list[str]:
    rows = [{**r, "id": None} if i in (2, 4) else r for i, r in enumerate(ctx.rows)]
    return ctx.argv(ctx.jsonl(ctx.tmp / "rows.jsonl", rows))


CASES = [
    # ---- issue 31 class 4: a key given twice ---------------------------------------------------------------------
    (
        "yaml-duplicate-key",
        lambda c: _recipe_plus(c, "learning_rate: 5.0\n"),
        ["recipe.yaml:", "'learning_rate' is given twice", "first on line", "keep one"],
    ),
    (
        "yaml-duplicate-nested-key",
        lambda c: _recipe_plus(c, "model_init_kwargs: {a: 1, a: 2}\n"),
        ["recipe.yaml:", "'a' is given twice"],
    ),
    (
        "jsonl-duplicate-field",
        lambda c: c.argv(
            _raw(
                c,
                "".join(json.dumps(r) + "\n" for r in c.rows[:2]) + '{"query": "a", "query": "b", "positive": "c"}\n',
            )
        ),
        ["rows.jsonl:3", "'query' is given twice", "keep one"],
    ),
    (
        "json-array-duplicate-field",
        lambda c: c.argv(_bytes_rows(c, "rows.json", b'[{"query": "a", "positive": "b", "positive": "c"}]')),
        ["rows.json", "'positive' is given twice"],
    ),
    # ---- issue 31 class 6: a scalar or a nested list where a list is expected -------------------------------------
    (
        "reward-terms-a-string",
        lambda c: c.argv(reward_terms="contrastive", term_weights=[1.0]),
        ["recipe.yaml:", "reward_terms must be a list", "[contrastive]"],
    ),
    (
        "term-weights-a-number",
        lambda c: c.argv(reward_terms=["contrastive"], term_weights=1.0),
        ["recipe.yaml:", "term_weights must be a list", "[1.0]"],
    ),
    (
        "lora-targets-a-string",
        lambda c: c.argv(lora_target_modules="q_proj"),
        ["recipe.yaml:", "lora_target_modules must be a list", "[q_proj]", "all-linear"],
    ),
    (
        "lora-targets-nested",
        lambda c: c.argv(lora_target_modules=[["q_proj", "v_proj"]]),
        ["recipe.yaml:", "lora_target_modules must be a flat list", "item 1 is a list"],
    ),
    ("directions-a-mapping", lambda c: c.argv(directions={"q2d": 1}), ["directions must be a list", "mapping"]),
    # ---- issue 31 class 8: a null id ------------------------------------------------------------------------------
    ("null-ids", _null_ids, ["rows.jsonl:3: row 3", "field 'id' is null", "unique id"]),
    # ---- class 1: these used to fail after grace_run.json was written -------------------------------------------
    (
        "lone-surrogate-in-text",
        lambda c: c.argv(
            _raw(c, "".join(json.dumps(r) + "\n" for r in c.rows[:2]) + '{"query": "a\\ud800", "positive": "b"}\n')
        ),
        ["rows.jsonl:3: row 3", "'query'", "lone surrogate", "fix or remove"],
    ),
    ("max-completion-length-zero", lambda c: c.argv(max_completion_length=0), ["max_completion_length", "got 0"]),
    ("learning-rate-negative", lambda c: c.argv(learning_rate=-1e-3), ["learning_rate must be >= 0", "-0.001"]),
    ("temperature-nan", lambda c: c.argv(temperature=float("nan")), ["temperature is nan", "finite"]),
    ("max-steps-fraction", lambda c: c.argv(max_steps=1.7), ["max_steps must be an integer", "1.7"]),
    (
        "eval-sts-malformed",
        lambda c: c.argv(eval_sts_path=_sts(c, ["a\tb\tc"])),
        ["sts.tsv:1", "3 tab-separated fields", "needs 7"],
    ),
    # ---- class 2: a run that would train nothing, or on a NaN --------------------------------------------------
    ("one-row-dataset", lambda c: c.argv(c.jsonl(c.tmp / "rows.jsonl", c.rows[:1])), ["1 row(s)", "0 steps"]),
    ("max-train-rows-zero", lambda c: c.argv(max_train_rows=0), ["max_train_rows must be an integer >= 1", "0"]),
    ("max-train-rows-negative", lambda c: c.argv(max_train_rows=-1), ["max_train_rows must be an integer", "-1"]),
    ("max-train-rows-one", lambda c: c.argv(max_train_rows=1), ["1 row(s)", "raise max_train_rows"]),
    (
        "contrastive-temperature-nan",
        lambda c: c.argv(contrastive_temperature=float("nan")),
        ["contrastive_temperature"],
    ),
    ("term-weight-nan", lambda c: c.argv(term_weights=[1.0, float("nan"), 0.1]), ["term_weights is nan"]),
    ("term-weight-inf", lambda c: c.argv(term_weights=[float("inf"), 0.1, 0.1]), ["term_weights is inf"]),
    ("top-p-zero", lambda c: c.argv(top_p=0.0), ["top_p must be in (0, 1]"]),
    ("epochs-zero", lambda c: c.argv(max_steps=-1, num_train_epochs=0), ["num_train_epochs must be > 0"]),
    ("anchor-temperature-inf", lambda c: c.argv(anchor_temperature=float("inf")), ["anchor_temperature is inf"]),
    ("learning-rate-nan", lambda c: c.argv(learning_rate=float("nan")), ["learning_rate is nan"]),
    ("max-grad-norm-negative", lambda c: c.argv(max_grad_norm=-1.0), ["max_grad_norm must be >= 0"]),
    ("weight-decay-negative", lambda c: c.argv(weight_decay=-0.1), ["weight_decay must be >= 0"]),
    ("ray-cpus-nan", lambda c: c.argv(ray_actor_num_cpus=float("nan")), ["ray_actor_num_cpus is nan"]),
    (
        "eval-sts-gold-out-of-range",
        lambda c: c.argv(eval_sts_path=_sts(c, [_stsb("3.0", 1), _stsb("99", 2)])),
        ["sts.tsv:2", "gold score '99'", "[0, 5]"],
    ),
    (
        "eval-sts-gold-constant",
        lambda c: c.argv(eval_sts_path=_sts(c, [_stsb("3.0", 1), _stsb("3.0", 2)])),
        ["sts.tsv", "every gold score is 3.0"],
    ),
    (
        "max-completion-length-null",
        lambda c: c.argv(max_completion_length=None),
        ["max_completion_length must be >= 1 token", "got None"],
    ),
    ("dataset-path-a-number", lambda c: c.argv(dataset_path=5), ["dataset_path must be a string", "got 5"]),
    ("output-dir-a-number", lambda c: c.argv(output_dir=123), ["recipe.yaml", "wrong type"]),
    ("max-steps-not-a-number", lambda c: c.argv(max_steps="abc"), ["recipe.yaml", "invalid int value: 'abc'"]),
    ("seed-not-a-number", lambda c: c.argv(seed="x"), ["recipe.yaml", "--seed", "invalid int value"]),
    ("unknown-recipe-key", lambda c: c.argv(lerning_rate=1e-4), ["lerning_rate"]),
    ("instruction-empty", lambda c: c.argv(instruction="  "), ["instruction is empty"]),
    ("batch-size-zero", lambda c: c.argv(per_device_train_batch_size=0), ["per_device_train_batch_size must be >= 1"]),
    ("num-iterations-zero", lambda c: c.argv(num_iterations=0), ["num_iterations must be >= 1"]),
    # ---- class 3: a directory holding a user's own files ---------------------------------------------------------
    ("output-dir-holds-user-files", _user_files, ["not empty and holds no grace-rl run", "README.md", "overwrite"]),
    # ---- class 4: unreadable data files --------------------------------------------------------------------------
    (
        "data-not-utf8",
        lambda c: c.argv(_jsonl_bytes(c, b'{"query": "caf\xe9", "positive": "b"}')),
        ["rows.jsonl:3", "not UTF-8"],
    ),
    (
        "data-binary",
        lambda c: c.argv(_bytes_rows(c, "rows.jsonl", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)),
        ["rows.jsonl:1", "not UTF-8", "binary"],
    ),
    (
        "json-array-truncated",
        lambda c: c.argv(_bytes_rows(c, "rows.json", ("[\n" + json.dumps(c.rows[0]) + ',\n{"query": ').encode())),
        ["rows.json:3", "not valid JSON", "truncated"],
    ),
    (
        "json-array-not-utf8",
        lambda c: c.argv(_bytes_rows(c, "rows.json", b'[\n{"query": "\xff", "positive": "b"}]')),
        ["rows.json:2", "not UTF-8"],
    ),
    (
        "json-not-an-array-of-objects",
        lambda c: c.argv(_bytes_rows(c, "rows.json", b"[1, 2, 3]")),
        ["rows.json: row 1", "expected an object"],
    ),
    (
        "unsupervised-txt-not-utf8",
        lambda c: c.argv(_bytes_rows(c, "texts.txt", b"a fine line\nbad \xc3\x28 line\n"), task="unsupervised"),
        ["texts.txt:2", "not UTF-8"],
    ),
    # ---- class 6: limits -----------------------------------------------------------------------------------------
    (
        "zero-width-only-text",
        lambda c: c.bad_row(_set("query", "\u200b\u200d\ufeff")),
        ["row 3", "'query'", "no visible character"],
    ),
    ("text-over-model-context", _long_text, ["row 3", "'positive'", "tokens", "context of 512", "shorten it"]),
    ("yaml-billion-laughs", lambda c: _recipe_text(c, _bomb()), ["recipe.yaml", "expands to", "YAML nodes"]),
    (
        "yaml-too-large",
        lambda c: _recipe_text(c, "#" * (1 << 20) + "\nseed: 0\n"),
        ["recipe.yaml", "bytes", "at most"],
    ),
    (
        "yaml-invalid",
        lambda c: _recipe_text(c, "seed: 0\nreward_terms: [contrastive\n"),
        ["recipe.yaml:", "not valid YAML"],
    ),
    ("yaml-not-utf8", lambda c: _recipe_text(c, b"seed: 0\ninstruction: \xff\n"), ["recipe.yaml", "not UTF-8"]),
    ("recipe-missing", lambda c: ["--config", str(c.tmp / "nope.yaml")], ["nope.yaml", "does not exist"]),
]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("build, needles", [pytest.param(b, n, id=i) for i, b, n in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    build, needles, tmp_path, tiny_model_dir, demo_rows, recipe, jsonl, dcg_data, dcg_args, tally, capsys
):
    rows = [json.loads(x) for x in demo_rows.read_text().splitlines()[:6]]
    ctx = Ctx(tmp_path, tiny_model_dir, rows, recipe, jsonl, dcg_data, dcg_args)
    argv = build(ctx)
    before = _snapshot(ctx.out)
    assert cli_main(["train", *argv]) == 2
    line = _one_line_error(capsys)
    missing = [n for n in needles if n not in line]
    assert not missing, f"message lacks {missing}: {line}"
    assert _snapshot(ctx.out) == before, "the output directory changed"
    tally.bad_input()


def test_debug_keeps_the_traceback(tmp_path, tiny_model_dir, demo_rows, recipe, monkeypatch, capsys):
    argv = ["train", *recipe(tmp_path, tiny_model_dir, demo_rows, learning_rate=-1.0)]
    with pytest.raises(ValueError, match="learning_rate must be >= 0"):
        cli_main([*argv, "--debug"])
    monkeypatch.setenv("GRACE_RL_DEBUG", "1")
    with pytest.raises(ValueError, match="learning_rate must be >= 0"):
        cli_main(argv)
    monkeypatch.setenv("GRACE_RL_DEBUG", "0")
    assert cli_main(argv) == 2 and "learning_rate" in _one_line_error(capsys)


def test_a_failed_start_does_not_block_the_output_directory(tmp_path, tiny_model_dir, demo_rows, recipe, tally):
    """A directory holding only a run marker (a start that died before training, with other settings) is a fresh
    directory: the preflight passes and the marker is replaced by this run's."""
    argv = recipe(tmp_path, tiny_model_dir, demo_rows)
    script_args, args, model_args = parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir()
    (out / RUN_FILE).write_text(json.dumps({"format": 1, "fingerprint": {"seed": 999, "max_completion_length": 0}}))
    checked = preflight(script_args, args, model_args, load_rows_for_task(script_args, args))
    start_run(out, checked.fingerprint, overwrite=False, is_main=True)
    assert json.loads((out / RUN_FILE).read_text())["fingerprint"] == checked.fingerprint
    tally.fault_survived()


@pytest.mark.slow  # a subprocess importing torch + TRL: ~10 s idle, ~50 s on the busy 2 cores
def test_script_entry_prints_one_line(tmp_path, tiny_model_dir, demo_rows, recipe):
    """`scripts/train_grace.py` (what deepspeed / accelerate launch) goes through the same layer."""
    argv = recipe(tmp_path, tiny_model_dir, demo_rows, temperature=float("nan"))
    env = {**os.environ, "GRACE_RL_DEBUG": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train_grace.py"), *argv], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [errors[-1]] and "temperature is nan" in errors[0] and proc.stderr.rstrip().endswith(errors[0])


def test_a_deepspeed_run_is_warned_of_a_stale_op_build_lock(
    tmp_path, tiny_model_dir, demo_rows, recipe, monkeypatch, caplog
):
    """A deepspeed op compile killed half-way leaves a lock every later run waits on forever: the preflight names it
    (a warning, not an error: a lock this old is stale, but the check cannot see other machines' users)."""
    lock = tmp_path / "extensions" / "deepspeed_shm_comm" / "lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    os.utime(lock, (0, 0))
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(lock.parent.parent))
    script_args, args, model_args = parse_args(recipe(tmp_path, tiny_model_dir, demo_rows))
    rows = load_rows_for_task(script_args, args)
    with caplog.at_level("WARNING", logger="grace_rl.extension_locks"):
        preflight(script_args, args, model_args, rows)
    assert caplog.text == ""  # no deepspeed: the op is never compiled, nothing to say
    # set after parsing: TrainingArguments would set deepspeed up
    args.deepspeed = str(REPO / "configs" / "deepspeed" / "zero2.json")
    with caplog.at_level("WARNING", logger="grace_rl.extension_locks"):
        preflight(script_args, args, model_args, rows)
    assert str(lock) in caplog.text and "delete the directory" in caplog.text
