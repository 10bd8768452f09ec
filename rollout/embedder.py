"""Embedder: turns (text, rationale) pairs into pooled embeddings with a causal LM, and writes greedy rationales.

It holds a model reference, a tokenizer and a messages function (the rationale template). It is plain Python so the
local pool, Ray actors and the inference encoder all share it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from rollout.pooling import pool_hidden_states

logger = logging.getLogger(__name__)

MessagesFn = Callable[[str], list[dict[str, str]]]


@dataclass(frozen=True)
class EmbedRequest:
    """One text to embed, optionally followed by a rationale given as token ids (``rationale_ids``)."""

    text: str
    rationale_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class PromptTokens:
    """Chat prompt token ids for one text, with the text's token span ``[start, end)``."""

    ids: tuple[int, ...]
    start: int
    end: int


def backbone_of(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack without the LM head (LoRA layers stay active: peft injects them in place)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    prefix = getattr(base, "base_model_prefix", "model")
    inner = getattr(base, prefix, None)
    return inner if isinstance(inner, torch.nn.Module) and inner is not base else base


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Temporarily switch ``model`` to eval mode (no dropout), restoring its previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class Embedder:
    """Embeds texts (+ rationales) by masked pooling of a causal LM's last hidden states.

    Args:
        model: a causal LM (plain or peft-wrapped). Its current weights are used at every call.
        tokenizer: the model's tokenizer (needs a chat template and a pad token).
        messages_fn: text -> chat messages whose last user turn's content is exactly the text.
        max_length: prompt + rationale tokens beyond this are cut (from the right).
    """

    def __init__(self, model: torch.nn.Module, tokenizer, messages_fn: MessagesFn, max_length: int = 512) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.messages_fn = messages_fn
        self.max_length = max_length
        self._prompt_cache: dict[str, PromptTokens] = {}
        self._special_ids = {i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompt_tokens(self, text: str) -> PromptTokens:
        """Tokenise the chat prompt for ``text`` (as TRL does) and locate the text's tokens (cached)."""
        cached = self._prompt_cache.get(text)
        if cached is not None:
            return cached
        rendered = self.tokenizer.apply_chat_template(
            self.messages_fn(text), tokenize=False, add_generation_prompt=True
        )
        char_start = rendered.rfind(text)
        if char_start < 0:
            raise ValueError(f"The chat template altered the input text; cannot locate it in {rendered!r}.")
        char_end = char_start + len(text)
        enc = self.tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
        inside = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > char_start and a < char_end]
        start, end = (inside[0], inside[-1] + 1) if inside else (0, 0)
        tokens = PromptTokens(tuple(enc["input_ids"]), start, end)
        if len(self._prompt_cache) > 100_000:
            self._prompt_cache.clear()
        self._prompt_cache[text] = tokens
        return tokens

    def rationale_tokens(self, ids: Sequence[int]) -> list[int]:
        """Drop everything from the first EOS/pad token on (it ends the rationale)."""
        out = []
        for token in ids:
            if token in self._special_ids:
                break
            out.append(int(token))
        return out

    def _batch(self, requests: Sequence[EmbedRequest]) -> dict[str, torch.Tensor]:
        """Right-padded input ids with text and rationale masks. Shapes ``(B, T)``."""
        rows = []
        for req in requests:
            prompt = self.prompt_tokens(req.text)
            rationale = self.rationale_tokens(req.rationale_ids)
            ids = list(prompt.ids) + rationale
            text_mask = [0] * len(ids)
            text_mask[prompt.start : prompt.end] = [1] * (prompt.end - prompt.start)
            rationale_mask = [0] * len(prompt.ids) + [1] * len(rationale)
            rows.append((ids[: self.max_length], text_mask[: self.max_length], rationale_mask[: self.max_length]))
        width = max(len(r[0]) for r in rows)
        pad_id = self.tokenizer.pad_token_id

        def padded(index: int, fill: int) -> torch.Tensor:
            return torch.tensor([r[index] + [fill] * (width - len(r[index])) for r in rows], dtype=torch.long)

        input_ids = padded(0, pad_id)  # (B, T)
        attention = torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows], dtype=torch.long)
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "text_mask": padded(1, 0),
            "rationale_mask": padded(2, 0),
        }

    @torch.no_grad()
    def embed(
        self,
        requests: Sequence[EmbedRequest],
        pooling: str = "mean",
        batch_size: int = 32,
        normalize: bool = True,
        show_progress_bar: bool = False,
    ) -> torch.Tensor:
        """Embed ``requests`` with the model's current weights. Returns ``(N, H)`` float32 on the CPU."""
        if not requests:
            return torch.empty(0, 0)
        backbone = backbone_of(self.model)
        # Sort by length so each batch pads little; restore the input order at the end.
        order = sorted(
            range(len(requests)),
            key=lambda i: -(len(self.prompt_tokens(requests[i].text).ids) + len(requests[i].rationale_ids)),
        )
        out: list[torch.Tensor | None] = [None] * len(requests)
        starts = range(0, len(order), batch_size)
        with eval_mode(self.model):
            for s in tqdm(starts, desc="Embedding", disable=not show_progress_bar, unit="batch"):
                idx = order[s : s + batch_size]
                batch = self._batch([requests[i] for i in idx])
                hidden = backbone(
                    input_ids=batch["input_ids"].to(self.device),
                    attention_mask=batch["attention_mask"].to(self.device),
                ).last_hidden_state  # (B, T, H)
                pooled = pool_hidden_states(
                    hidden,
                    batch["text_mask"].to(self.device),
                    batch["rationale_mask"].to(self.device),
                    pooling,
                    normalize,
                ).cpu()  # (B, H)
                for row, i in enumerate(idx):
                    out[i] = pooled[row]
        return torch.stack(out)  # type: ignore[arg-type]

    @torch.no_grad()
    def generate_rationales(
        self,
        texts: Sequence[str],
        max_new_tokens: int,
        temperature: float = 0.0,
        num_return_sequences: int = 1,
        batch_size: int = 16,
        show_progress_bar: bool = False,
    ) -> list[tuple[int, ...]]:
        """Write rationales for ``texts`` (greedy when ``temperature`` is 0).

        Returns ``len(texts) * num_return_sequences`` token-id tuples, grouped by text.
        """
        if max_new_tokens <= 0:
            return [()] * (len(texts) * num_return_sequences)
        pad_id = self.tokenizer.pad_token_id
        results: list[tuple[int, ...]] = []
        sampling = temperature > 0
        gen_kwargs = {"do_sample": sampling, "max_new_tokens": max_new_tokens, "pad_token_id": pad_id}
        if sampling:
            gen_kwargs.update(temperature=temperature, top_p=1.0, top_k=0, num_return_sequences=num_return_sequences)
        else:
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        starts = range(0, len(texts), batch_size)
        with eval_mode(self.model):
            for s in tqdm(starts, desc="Writing rationales", disable=not show_progress_bar, unit="batch"):
                prompts = [self.prompt_tokens(t).ids for t in texts[s : s + batch_size]]
                width = max(len(p) for p in prompts)
                input_ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts], device=self.device)
                attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
                generated = self.model.generate(input_ids=input_ids, attention_mask=attention, **gen_kwargs)
                completions = generated[:, width:].tolist()  # (B * R, new)
                if not sampling and num_return_sequences > 1:
                    completions = [c for c in completions for _ in range(num_return_sequences)]
                results.extend(tuple(self.rationale_tokens(c)) for c in completions)
        return results
