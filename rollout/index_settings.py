"""Settings of the FAISS corpus index, without importing faiss (the config validates against these choices)."""

from __future__ import annotations

from dataclasses import dataclass

from rollout.errors import UserError

INDEX_TYPES = ("flat", "ivf")
REFRESH_POLICIES = ("oldest", "recent")
CORPUS_EMBED_MODES = ("plain", "rationale")


@dataclass(frozen=True)
class IndexSettings:
    """How the corpus is embedded, indexed and refreshed.

    Parameters:
        index_type (`str`, *optional*, defaults to `"flat"`):
            `flat` (exact inner product: `IndexIDMap2` over `IndexFlatIP`) or `ivf`
            (`IndexIVFFlat`, approximate; keeps its own ids with a hashtable direct map, because `IndexIDMap`'s
            remove assumes a sub-index that renumbers, which IVF does not).
        ivf_nlist (`int`, *optional*):
            IVF cells; `None` = `min(4 sqrt(N), N / 39)` (at least 1).
        ivf_nprobe (`int`, *optional*, defaults to `16`):
            IVF cells visited per search.
        embed_mode (`str`, *optional*, defaults to `"plain"`):
            `plain` (document text alone) or `rationale` (text + its own rationale, as at inference).
        rationale_tokens (`int`, *optional*, defaults to `32`):
            rationale budget in `rationale` mode.
        rationale_temperature (`float`, *optional*, defaults to `0.0`):
            rationale sampling temperature (0 = greedy).
        pooling (`str`, *optional*, defaults to `"mean"`):
            pooling mode passed to the embedding pool.
        refresh_policy (`str`, *optional*, defaults to `"oldest"`):
            `oldest` (oldest weight version first, round robin) or `recent` (documents that were
            gold or retrieved since they were last embedded first, then oldest).
        use_gpu (`bool`, *optional*, defaults to `True`):
            search on a GPU copy when the installed faiss has GPUs.
        chunk_size (`int`, *optional*, defaults to `64`):
            documents per embedding-pool call (one progress-bar update).
    """

    index_type: str = "flat"
    ivf_nlist: int | None = None
    ivf_nprobe: int = 16
    embed_mode: str = "plain"
    rationale_tokens: int = 32
    rationale_temperature: float = 0.0
    pooling: str = "mean"
    refresh_policy: str = "oldest"
    use_gpu: bool = True
    chunk_size: int = 64

    def __post_init__(self) -> None:
        # The rollout layer's own front door: benchmarks and tests build IndexSettings without a GraceConfig (which
        # checks a recipe's values first, with their one rule each, in grace_rl.config).
        choices = {"index_type": INDEX_TYPES, "embed_mode": CORPUS_EMBED_MODES, "refresh_policy": REFRESH_POLICIES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}.")
        if self.ivf_nlist is not None and self.ivf_nlist < 1:
            raise UserError(f"ivf_nlist must be >= 1 (or None for automatic), got {self.ivf_nlist}.")
        if self.ivf_nprobe < 1 or self.chunk_size < 1:
            raise UserError(f"ivf_nprobe and chunk_size must be >= 1, got {self.ivf_nprobe}, {self.chunk_size}.")
