"""The retrieval dev split and CPU corpus carved from BEIR SciFact's train claims (pure functions, no models).

The protocol's retrieval figures use a dev split of the SciFact *train* claims (the test claims are held out): a fixed
fraction of the judged query ids, chosen by a hash of the id (so adding or removing other claims never moves one), and
kept clean of training in two ways:

- no dev claim equals a training claim (after :func:`grace_rl.eval.protocol.normalise`), and
- no gold document of a dev claim is the positive of a training row: SciFact writes several claims per abstract, so a
  training claim that shares its gold abstract with a dev claim is dropped from training (strict: the policy never
  sees a dev claim's abstract as a target).

The corpus is a CPU-sized subset of the 5,183 abstracts: every gold document of the dev and training claims plus a
fixed random sample of the others (seeded), so each query's gold documents are retrievable and the distractors are real
abstracts. `scripts/build_scifact_data.py` writes the files that ship in `data/scifact/`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from grace_rl.errors import UserError

DEV_FRACTION = 0.2
SPLIT_SALT = "grace-rl/scifact-dev"


def in_dev(query_id: str, fraction: float = DEV_FRACTION, salt: str = SPLIT_SALT) -> bool:
    """Whether `query_id` belongs to the dev split: the first 8 bytes of `sha256(salt:id)` as a fraction of 2^64 are
    below `fraction` (deterministic, independent of every other id)."""
    if not 0 < fraction < 1:
        raise UserError(f"fraction must be in (0, 1), got {fraction}.")
    digest = hashlib.sha256(f"{salt}:{query_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


@dataclass(frozen=True)
class RetrievalSplit:
    """Query ids of the dev and training sides, and the training claims dropped for sharing a dev gold document or
    text."""

    dev: tuple[str, ...]
    train: tuple[str, ...]
    dropped_shared_gold: tuple[str, ...]
    dropped_same_text: tuple[str, ...]


def carve_split(
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    fraction: float = DEV_FRACTION,
    normalise=None,
) -> RetrievalSplit:
    """Split the judged queries (`qrels` entries with a relevant document that are in `queries`) into dev and train.

    A training claim is dropped when one of its gold documents is gold for a dev claim, or when its text equals a dev
    claim's (`normalise` decides equality; default: exact).
    """
    norm = normalise or (lambda t: t)
    judged = sorted(
        (q for q, rels in qrels.items() if q in queries and any(r > 0 for r in rels.values())), key=_id_order
    )
    dev = [q for q in judged if in_dev(q, fraction)]
    dev_gold = {d for q in dev for d, r in qrels[q].items() if r > 0}
    dev_texts = {norm(queries[q]) for q in dev}
    train, shared, same = [], [], []
    for q in judged:
        if q in set(dev):
            continue
        if any(r > 0 and d in dev_gold for d, r in qrels[q].items()):
            shared.append(q)
        elif norm(queries[q]) in dev_texts:
            same.append(q)
        else:
            train.append(q)
    return RetrievalSplit(tuple(dev), tuple(train), tuple(shared), tuple(same))


def cpu_corpus_ids(all_ids: Sequence[str], required: Iterable[str], size: int, seed: int = 0) -> list[str]:
    """`size` corpus ids: every id of `required` (gold documents) plus a seeded random sample of the others, in the
    order of `all_ids`. Fails when `size` is smaller than the required set or larger than the corpus."""
    need = set(required)
    missing = need.difference(all_ids)
    if missing:
        raise UserError(f"{len(missing)} required document id(s) are not in the corpus, e.g. {sorted(missing)[:3]}.")
    if not len(need) <= size <= len(all_ids):
        raise UserError(f"size must be in [{len(need)} (the required documents), {len(all_ids)}], got {size}.")
    others = [d for d in all_ids if d not in need]
    chosen = need | set(random.Random(seed).sample(others, size - len(need)))
    return [d for d in all_ids if d in chosen]


def _id_order(query_id: str) -> tuple[int, str]:
    return (int(query_id), query_id) if query_id.isdigit() else (10**18, query_id)
