"""`--instruction` on `encode`, `eval sts` and `eval retrieval` reaches `GraceEncoder.from_pretrained`."""

from __future__ import annotations

import pytest

from grace_rl.cli import build_parser
from grace_rl.commands import encode_eval


@pytest.mark.parametrize(
    "argv",
    [
        ["encode", "--input", "t.txt", "--output", "e.npy"],
        ["eval", "sts", "--data", "d.tsv"],
        ["eval", "retrieval", "--corpus", "c.jsonl", "--queries", "q.tsv", "--qrels", "r.tsv"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_instruction_option_reaches_the_encoder(argv, monkeypatch):
    import grace_rl.encoder

    seen = {}
    monkeypatch.setattr(
        grace_rl.encoder.GraceEncoder, "from_pretrained", classmethod(lambda cls, name, **kw: seen.update(kw))
    )
    args = build_parser().parse_args([*argv, "--instruction", "Paraphrase the text."])
    encode_eval._encoder(args)
    assert seen["instruction"] == "Paraphrase the text."
    encode_eval._encoder(build_parser().parse_args(argv))
    assert seen["instruction"] is None  # omitted: the run's own instruction, else the default
    with pytest.raises(ValueError, match="--instruction: empty"):
        encode_eval._encoder(build_parser().parse_args([*argv, "--instruction", " "]))
