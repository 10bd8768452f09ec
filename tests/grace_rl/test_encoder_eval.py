from __future__ import annotations

import json

import numpy as np
import pytest

from grace_rl.cli import main as cli_main
from grace_rl.encoder import GraceEncoder
from grace_rl.eval.sts import read_sts, sts_spearman


@pytest.fixture()
def encoder(tiny_model_dir):
    return GraceEncoder.from_pretrained(str(tiny_model_dir))


def test_encode_is_deterministic_and_normalised(encoder):
    texts = ["A dog runs.", "A cat sleeps on the sofa."]
    a = encoder.encode(texts, max_rationale_tokens=4, show_progress_bar=False)
    b = encoder.encode(texts, max_rationale_tokens=4, show_progress_bar=False)
    assert a.shape == (2, 32) and a.dtype == np.float32
    assert np.allclose(a, b) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    plain = encoder.encode(texts, max_rationale_tokens=0, show_progress_bar=False)
    assert not np.allclose(a, plain)


def test_rationales_returned_and_sampling_average(encoder):
    emb, rats = encoder.encode(
        ["Hello."],
        max_rationale_tokens=3,
        num_rationales=3,
        temperature=1.0,
        return_rationales=True,
        show_progress_bar=False,
    )
    assert emb.shape == (1, 32) and len(rats) == 1 and len(rats[0]) == 3
    with pytest.raises(ValueError, match="temperature"):
        encoder.encode(["Hello."], num_rationales=2)


def test_read_sts_formats(tmp_path):
    (tmp_path / "s.tsv").write_text("g\tf\t2012\t1\t4.5\tA b.\tC d.\ng\tf\t2012\t2\t1.0\tE.\tF.\n")
    (tmp_path / "s.jsonl").write_text(
        '{"sentence1": "A b.", "sentence2": "C d.", "score": 4.5}\n'
        '{"sentence1": "E.", "sentence2": "F.", "score": 1}\n'
    )
    (tmp_path / "sick.txt").write_text(
        "pair_ID\tsentence_A\tsentence_B\tentailment_label\trelatedness_score\n"
        "1\tA b.\tC d.\tNEUTRAL\t4.5\n2\tE.\tF.\tNEUTRAL\t1.0\n"
    )
    expected = (["A b.", "E."], ["C d.", "F."], [4.5, 1.0])
    assert read_sts(tmp_path / "s.tsv", "stsb") == expected
    assert read_sts(tmp_path / "s.jsonl", "jsonl") == expected
    assert read_sts(tmp_path / "sick.txt", "sick") == expected


def test_spearman_by_hand():
    a = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    b = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])  # cos 1, .707, 0
    assert sts_spearman(a, b, [3.0, 2.0, 1.0]) == pytest.approx(100.0)
    assert sts_spearman(a, b, [1.0, 2.0, 3.0]) == pytest.approx(-100.0)


def test_cli_eval_sts_and_encode(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "s.tsv"
    data.write_text(
        "".join(f"g\tf\t2012\t{i}\t{i % 5}.0\tSentence {i} here.\tAnother {i * 7} there.\n" for i in range(6))
    )
    assert (
        cli_main(
            [
                "eval",
                "sts",
                "--model",
                str(tiny_model_dir),
                "--data",
                str(data),
                "--limit",
                "5",
                "--max-rationale-tokens",
                "2",
            ]
        )
        == 0
    )
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["task"] == "sts" and line["n"] == 5 and -100 <= line["spearman"] <= 100
    texts = tmp_path / "t.txt"
    texts.write_text("one\ntwo\n\n")
    out = tmp_path / "e.npy"
    assert (
        cli_main(
            [
                "encode",
                "--model",
                str(tiny_model_dir),
                "--input",
                str(texts),
                "--output",
                str(out),
                "--max-rationale-tokens",
                "2",
            ]
        )
        == 0
    )
    assert np.load(out).shape == (2, 32)
    assert cli_main(["eval", "sts", "--model", str(tmp_path / "nope"), "--data", str(data)]) == 2
