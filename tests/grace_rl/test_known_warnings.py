"""Only the listed third-party warnings are silenced: the same text from another category, and our own warnings,
still show."""

from __future__ import annotations

import warnings

from grace_rl.known_warnings import KNOWN_WARNINGS, silence_known_warnings


def test_only_the_known_messages_are_silenced():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_warnings()
        for category, prefix, _ in KNOWN_WARNINGS:
            warnings.warn(prefix + " (trailing text)", category, stacklevel=1)  # silenced
        warnings.warn(KNOWN_WARNINGS[0][1], UserWarning, stacklevel=1)  # same text, other category: shown
        warnings.warn(
            "`lora_r` is deprecated and will be removed in v6.", FutureWarning, stacklevel=1
        )  # not ours to hide
        warnings.warn(
            "grace-rl: anchor_rationale_tokens is larger than max_completion_length", UserWarning, stacklevel=1
        )
    shown = [(w.category, str(w.message)) for w in caught]
    assert shown == [
        (UserWarning, KNOWN_WARNINGS[0][1]),
        (FutureWarning, "`lora_r` is deprecated and will be removed in v6."),
        (UserWarning, "grace-rl: anchor_rationale_tokens is larger than max_completion_length"),
    ]


def test_deepspeed_cpu_detection_record_is_dropped_and_others_kept(caplog):
    """deepspeed's "Setting accelerator to CPU" record (logged on every machine without CUDA) is dropped at its
    logger; its other records still show. Through deepspeed's own logger and detection code."""
    import logging

    from deepspeed.accelerator import real_accelerator
    from deepspeed.utils import logger as ds_logger

    silence_known_warnings()
    silence_known_warnings()  # idempotent: one filter
    assert sum(type(f).__name__ == "_DropKnownRecords" for f in ds_logger.filters) == 1
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    ds_logger.addHandler(handler)
    saved = real_accelerator.ds_accelerator
    try:
        real_accelerator.ds_accelerator = None  # run the auto-detection again
        with __import__("pytest").MonkeyPatch.context() as mp:
            mp.delenv("DS_ACCELERATOR", raising=False)
            real_accelerator.get_accelerator()
        ds_logger.warning("a DeepSpeed warning of its own")
    finally:
        real_accelerator.ds_accelerator = saved
        ds_logger.removeHandler(handler)
    assert not any(m.startswith("Setting accelerator to CPU") for m in seen), seen
    assert "a DeepSpeed warning of its own" in seen


CACHE_DEPRECATION = "`past_key_values`"  # transformers' FutureWarnings and its `[transformers]` log record share it


def test_encoding_prints_no_cache_deprecation_and_our_warnings_still_show(tiny_model_dir, tmp_path, caplog):
    """Encoding names the KV cache as the installed transformers does (`rollout.capture.cache_keyword`), so neither
    `generate`'s and `LlamaModel.forward`'s FutureWarnings nor the `past_key_values`/`cache_params` log record print;
    nothing is filtered, so a warning of ours in the same evaluation still shows."""
    import logging

    from transformers.utils import logging as hf_logging

    from grace_rl.encoder import GraceEncoder
    from grace_rl.eval.retrieval import evaluate_retrieval

    (tmp_path / "corpus.tsv").write_text("d1\tA dog runs in the park.\nd2\tA cat sleeps on the sofa.\n")
    (tmp_path / "queries.tsv").write_text("q1\tWhere does the dog run?\n")
    (tmp_path / "qrels.tsv").write_text("q1\td1\t1\nq1\td9\t1\n")  # d9 is not in the corpus: we warn
    encoder = GraceEncoder.from_pretrained(str(tiny_model_dir))
    assert encoder.embedder.share_prefix  # the prefix-cache path (generate and forward get a cache) is exercised
    hf_logging.warning_once.cache_clear()  # the record prints once per process: let this test see it
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logging.getLogger("transformers").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, "grace_rl"):
            warnings.simplefilter("always")
            evaluate_retrieval(
                encoder,
                tmp_path / "corpus.tsv",
                tmp_path / "queries.tsv",
                tmp_path / "qrels.tsv",
                max_rationale_tokens=4,
                show_progress_bar=False,
            )
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert not [str(w.message) for w in caught if CACHE_DEPRECATION in str(w.message)]
    assert not [m for m in records if CACHE_DEPRECATION in m]
    assert "1 relevant document id(s) are not in" in caplog.text  # ours
