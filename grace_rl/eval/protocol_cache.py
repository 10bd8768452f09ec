"""The evaluation protocol's sweep cache: one JSON file per (model, dev set pairs, budgets), so the base model is
evaluated once per dev set and a trained run only again when its weights change."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grace_rl.run_files import atomic_write

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1  # bump when a sweep's numbers would change for the same key
GRACE_META = "grace_config.json"  # written by grace_rl.encoder.save_grace_meta
ADAPTER_FILE = "adapter_model.safetensors"
_DIGEST_MAX_BYTES = 256 * 2**20  # weight files up to this size are hashed; larger ones are keyed by size + mtime


def _file_fingerprint(path: Path, force_digest: bool = False) -> dict[str, Any]:
    stat = path.stat()
    if not force_digest and stat.st_size > _DIGEST_MAX_BYTES:
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"size": stat.st_size, "sha256": h.hexdigest()}


def model_fingerprint(model: str | Path) -> dict[str, Any]:
    """What identifies a model's embeddings: the id as given (the embedded default), or a local directory's resolved
    path, its GRACE and adapter configs, and a digest of each weight file (size + mtime for files over 256 MiB; the
    adapter file is always hashed), so a retrained adapter in the same run dir gets a new cache key."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return {"model": str(model)}
    fp: dict[str, Any] = {"model": str(path.resolve())}
    for name in (GRACE_META, "adapter_config.json"):
        if (path / name).is_file():
            fp[name] = hashlib.sha256((path / name).read_bytes()).hexdigest()
    fp["weights"] = {f.name: _file_fingerprint(f, f.name == ADAPTER_FILE) for f in sorted(path.glob("*.safetensors"))}
    return fp


def cache_key(
    model: str | Path, digest: str, budgets: Sequence[int], instruction: str | None = None
) -> dict[str, Any]:
    """The key of one sweep: protocol version, :func:`model_fingerprint`, the dev set's pairs digest, the budgets,
    and the instruction when it overrides the model's own (a base model under a trained run's prompt)."""
    key = {
        "protocol": PROTOCOL_VERSION,
        "model": model_fingerprint(model),
        "pairs": digest,
        "budgets": sorted(budgets),
    }
    if instruction is not None:
        key["instruction"] = instruction
    return key


def embedded_by(model: str | Path) -> dict[str, Any]:
    """`{"embedded_by": ...}` for a frozen-embedder run (its `grace_config.json` names a `reward_embedder`: its
    policy writes, that model embeds), else `{}`. Part of an STS sweep's key: sweeps of such runs cached before
    2026-12-07 pooled the policy's own states and must not be reused."""
    meta = Path(model) / GRACE_META
    if not meta.is_file():
        return {}
    try:
        value = json.loads(meta.read_text(encoding="utf-8")).get("reward_embedder")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return {}  # the protocol reports a broken file where it reads the run's settings
    return {"embedded_by": value} if value else {}


def _cache_file(cache_dir: Path, key: dict[str, Any]) -> Path:
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:24]
    return Path(cache_dir) / f"sweep-{name}.json"


def load_sweep(cache_dir: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The cached sweep for `key`, or `None`. A cache file that does not parse or holds another key is ignored
    (with a warning) and will be overwritten."""
    path = _cache_file(cache_dir, key)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        logger.warning("Ignoring unreadable cache file %s (%s); recomputing.", path, err)
        return None
    if record.get("key") != key:
        logger.warning("Ignoring cache file %s: it holds another key; recomputing.", path)
        return None
    return record


def save_sweep(cache_dir: Path, record: dict[str, Any]) -> Path:
    """Write `record` (with its `key`) atomically (`run_files.atomic_write`: temp file + `os.replace`; the file gets
    the usual umask permissions, so the cache is shared like the converted model cache)."""
    path = _cache_file(cache_dir, record["key"])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(record))
    return path
