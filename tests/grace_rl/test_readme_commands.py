"""Every command in the README's code blocks parses, without running anything: `grace-rl` lines through the CLI's own
argparse parser (`train` lines through TRL's recipe parser, with the recipe file read), `make` targets against the
Makefile, launcher lines' script and config files on disk, JSON blocks as JSON, Python blocks compiled with their
imports found. The README is the front door; a command there that fails at once is the first thing a user meets."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest

from grace_rl.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ["docs/recipes.md", "docs/training.md", "docs/evaluation.md", "docs/distributed.md", "docs/reliability.md"]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LAUNCHERS = {"deepspeed", "accelerate", "torchrun", "python"}
FILE_FLAGS = {"--config", "--config_file", "--data", "--deepspeed"}  # their value is a file the repository ships


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def shell_commands(body: str) -> list[list[str]]:
    """The commands of a bash block: continuation lines joined, comments dropped, pipelines split, a leading
    `VAR=value` environment and `. .venv/bin/activate` skipped; each command as argv."""
    commands = []
    for line in body.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars="|;&")
        lexer.whitespace_split = True
        argv: list[str] = []
        for token in [*lexer, "|"]:
            if token not in {"|", "||", ";", "&", "&&"}:
                argv.append(token)
                continue
            while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):
                argv = argv[1:]
            if argv and argv[0] not in {".", "source", "echo"}:
                commands.append(argv)
            argv = []
    return commands


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {m.group(1) for m in re.finditer(r"^([A-Za-z][\w-]*):", text, re.MULTILINE)}


def _readme_commands() -> list[list[str]]:
    out = []
    for lang, body in code_blocks(README.read_text()):
        if lang in {"bash", "sh", "shell"}:
            out.extend(shell_commands(body))
    return out


def _id(argv: list[str]) -> str:
    return " ".join(argv)[:70]


README_COMMANDS = _readme_commands()


def test_readme_is_short_and_links_its_docs():
    text = README.read_text()
    assert len(text.splitlines()) <= 250, "the README is the front door: move detail to docs/"
    for doc in [*DOCS, "bench/README.md"]:
        assert (ROOT / doc).is_file(), doc
        assert f"]({doc}" in text, f"README does not link {doc}"
    assert "## Retrieval" in text
    assert {"make", "grace-rl"} <= {argv[0] for argv in README_COMMANDS}


def _check_files(argv: list[str]) -> None:
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag in FILE_FLAGS:
            assert (ROOT / value).exists(), f"{_id(argv)}: {flag} {value} does not exist"
    for arg in argv:
        if arg.endswith(".py") and not arg.startswith("-"):
            assert (ROOT / arg).is_file(), f"{_id(argv)}: {arg} does not exist"


def _check_grace_rl(argv: list[str]) -> None:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv[1:])  # argparse errors raise SystemExit: a failed test
    if getattr(args, "passthrough", False):  # `train`: the rest goes to TRL's parser, with the recipe read
        from trl import ModelConfig

        from grace_rl.config import GraceConfig, GraceScriptArguments
        from grace_rl.train import _RecipeParser

        _check_files(argv)
        _RecipeParser((GraceScriptArguments, GraceConfig, ModelConfig)).parse_args_and_config(args=rest)
    else:
        assert not rest, f"{_id(argv)}: unrecognized arguments {rest}"
        if argv[1] != "eval" or argv[2] == "sts":
            _check_files(argv)


@pytest.mark.parametrize("argv", README_COMMANDS, ids=_id)
def test_readme_command_parses(argv: list[str]):
    tool = argv[0]
    if tool == "make":
        targets = [a for a in argv[1:] if "=" not in a and not a.startswith("-")]
        assert targets and set(targets) <= makefile_targets(), f"{_id(argv)}: not a Makefile target"
    elif tool == "grace-rl":
        _check_grace_rl(argv)
    elif tool in LAUNCHERS:
        _check_files(argv)
        assert "scripts/train_grace.py" in argv, f"{_id(argv)}: launches no training script"
    else:
        pytest.fail(f"README command {_id(argv)!r}: unknown tool {tool!r}; teach this test to check it")


def test_readme_json_and_python_blocks_parse():
    for lang, body in code_blocks(README.read_text()):
        if lang == "json":
            for line in body.splitlines():
                json.loads(line)
        elif lang == "python":
            tree = ast.parse(body)
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    assert importlib.util.find_spec(node.module) is not None, node.module


def test_shell_commands_splits_pipes_env_and_continuations():
    body = "OMP_NUM_THREADS=1 make demo  # x\necho 'a | b' | grace-rl encode --model m \\\n  --input -\n"
    body += ". .venv/bin/activate\n"
    assert shell_commands(body) == [["make", "demo"], ["grace-rl", "encode", "--model", "m", "--input", "-"]]
