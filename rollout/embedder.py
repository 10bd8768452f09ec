"""Embedder: turns (text, rationale) pairs into pooled embeddings with a causal LM, and writes greedy rationales.

It holds a model reference, a tokenizer and a messages function (the rationale template). It is plain Python so the
local pool, Ray actors and the inference encoder all share it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

from rollout.capture import HiddenStateCapture, cache_keyword, count_rationale_tokens, output_cache, pool_captured
from rollout.pooling import pool_hidden_states

logger = logging.getLogger(__name__)

MessagesFn = Callable[[str], list[dict[str, str]]]

# encode() texts per generate call. Measured in CPU seconds (robust on a shared machine) with the default 135M model,
# 1 torch thread, 96 STS sentences and 32-token rationales (bench/encode_speed.py --sweep 8,16,32,64 --pairs 48):
# 1.69, 2.25, 2.70 and 2.68 texts/s. Beyond 32 the gain of bigger matrix products is eaten by decode steps spent on
# rows that already ended. On a GPU pass a larger batch_size.
ENCODE_BATCH_SIZE = 32


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


def rationale_end_ids(tokenizer, *eos_sources: int | Sequence[int] | None) -> list[int]:
    """Tokens that end a rationale: the tokenizer's EOS and pad plus every EOS id in ``eos_sources`` (e.g. a
    generation config's ``eos_token_id``, which may be a list: TRL stops generation on each of them).

    >>> rationale_end_ids(tokenizer, model.generation_config.eos_token_id)  # doctest: +SKIP
    [2, 128001, 128009]
    """
    ids = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    for source in eos_sources:
        if source is None:
            continue
        ids.update([source] if isinstance(source, int) else source)
    return sorted(int(i) for i in ids if i is not None)


def generation_eos(model: torch.nn.Module) -> int | list[int] | None:
    """``model.generation_config.eos_token_id`` (an id, a list of ids, or ``None``); peft models forward it."""
    config = getattr(model, "generation_config", None)
    return getattr(config, "eos_token_id", None)


def shared_prefix_length(prompts: Sequence[PromptTokens]) -> int:
    """Tokens every prompt starts with before any text token (the system turn and the user header)."""
    limit = min((p.start for p in prompts), default=0)
    if limit == 0:
        return 0
    head = torch.tensor([p.ids[:limit] for p in prompts])  # (N, L)
    same = (head == head[:1]).all(dim=0)  # (L,)
    return int(same.long().cumprod(dim=0).sum())


@dataclass
class EncodeJob:
    """Settings of one :meth:`Embedder.encode` call; ``prefix_cache`` holds the KV cache of the first ``prefix``
    prompt tokens, shared by every prompt."""

    max_new_tokens: int
    temperature: float
    r: int
    pooling: str
    prefix: int = 0
    prefix_cache: Any = None
    budgets: tuple[int, ...] | None = None  # greedy prefix sweeps: pool at each budget (Embedder.encode_budgets)


class Embedder:
    """Embeds texts (+ rationales) by masked pooling of a causal LM's last hidden states.

    Truncation policy: the rationale is never cut. An input text longer than ``max_text_tokens`` tokens is cut at its
    end (the chat template around it is kept) *before* anything else sees it: :meth:`prompt_tokens` is the one place
    prompts come from, for generating rationales, for embedding, and for the trainer's rollout prompts
    (:meth:`fit_text`), so a rationale is always pooled with the text it was written about.

    Args:
        model: a causal LM (plain or peft-wrapped). Its current weights are used at every call.
        tokenizer: the model's tokenizer (needs a chat template and a pad token).
        messages_fn: text -> chat messages whose last user turn's content is exactly the text.
        max_text_tokens: input-text tokens kept (the text is cut from its end beyond this).
        end_token_ids: tokens that end a rationale (default: the tokenizer's EOS and pad plus the model's
            generation config: :func:`rationale_end_ids`, the ids TRL's generation stops on).
        min_new_tokens: end tokens are suppressed until a rationale has this many tokens (HF generate's
            ``min_new_tokens``, capped at each call's budget); 0 = rationales may end at once. A recipe's rollouts get
            the same floor from ``generation_kwargs: {min_new_tokens: N}``; this is its counterpart for encoding (e.g.
            a length-matched control, ``bench/retrieval/length_control.py``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        messages_fn: MessagesFn,
        max_text_tokens: int = 512,
        end_token_ids: Sequence[int] | None = None,
        min_new_tokens: int = 0,
    ) -> None:
        if max_text_tokens < 1:  # a direct caller's guard (GraceConfig checks a recipe's): 0 would embed no text
            raise ValueError(f"max_text_tokens must be >= 1, got {max_text_tokens}.")
        self.model = model
        self.tokenizer = tokenizer
        self.messages_fn = messages_fn
        self.max_text_tokens = max_text_tokens
        if min_new_tokens < 0:
            raise ValueError(f"min_new_tokens must be >= 0, got {min_new_tokens}.")
        self.min_new_tokens = min_new_tokens
        self._prompt_cache: dict[str, PromptTokens] = {}
        if end_token_ids is None:
            end_token_ids = rationale_end_ids(tokenizer, generation_eos(model))
        self.end_ids = sorted({int(i) for i in end_token_ids})
        self._special_ids = set(self.end_ids)
        self.share_prefix = True  # encode(): run the prompts' common template prefix once (off: models without a
        # DynamicCache-compatible generate)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _render(self, text: str) -> tuple[PromptTokens, list[tuple[int, int]], int]:
        """Chat prompt token ids for ``text`` (as TRL tokenises it), its token offsets and the text's first char."""
        rendered = self.tokenizer.apply_chat_template(
            self.messages_fn(text), tokenize=False, add_generation_prompt=True
        )
        char_start = rendered.rfind(text)
        if char_start < 0:
            raise ValueError(f"The chat template altered the input text; cannot locate it in {rendered!r}.")
        char_end = char_start + len(text)
        enc = self.tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
        offsets = [tuple(o) for o in enc["offset_mapping"]]
        inside = [i for i, (a, b) in enumerate(offsets) if b > char_start and a < char_end]
        start, end = (inside[0], inside[-1] + 1) if inside else (0, 0)
        return PromptTokens(tuple(enc["input_ids"]), start, end), offsets, char_start

    def _fit(self, text: str) -> tuple[str, PromptTokens]:
        """``text`` cut at its end to at most ``max_text_tokens`` tokens (as tokenised inside the prompt), and its
        prompt tokens."""
        for _ in range(4):  # re-tokenising a cut text may shift a boundary token; converges in 1-2 rounds
            tokens, offsets, char_start = self._render(text)
            if tokens.end - tokens.start <= self.max_text_tokens:
                return text, tokens
            cut = offsets[tokens.start + self.max_text_tokens - 1][1] - char_start  # chars of the kept tokens
            text = text[: max(cut, 0)]
        return text, self._render(text)[0]

    def fit_text(self, text: str) -> str:
        """``text`` cut at its end to at most ``max_text_tokens`` tokens: what every prompt for it holds."""
        return self._fit(text)[0]

    def prompt_tokens(self, text: str) -> PromptTokens:
        """The chat prompt for ``text`` (cut by :meth:`fit_text`) and the text's token span ``[start, end)``."""
        cached = self._prompt_cache.get(text)
        if cached is not None:
            return cached
        tokens = self._fit(text)[1]
        if len(self._prompt_cache) > 100_000:
            self._prompt_cache.clear()
        self._prompt_cache[text] = tokens
        return tokens

    def rationale_tokens(self, ids: Sequence[int]) -> list[int]:
        """Drop everything from the first end token (EOS ids, pad) on: it ends the rationale."""
        out = []
        for token in ids:
            if token in self._special_ids:
                break
            out.append(int(token))
        return out

    def batch(self, requests: Sequence[EmbedRequest]) -> dict[str, torch.Tensor]:
        """Right-padded input ids with text and rationale masks. Shapes ``(B, T)``."""
        rows = []
        for req in requests:
            prompt = self.prompt_tokens(req.text)
            rationale = self.rationale_tokens(req.rationale_ids)
            ids = list(prompt.ids) + rationale
            text_mask = [0] * len(ids)
            text_mask[prompt.start : prompt.end] = [1] * (prompt.end - prompt.start)
            rationale_mask = [0] * len(prompt.ids) + [1] * len(rationale)
            rows.append((ids, text_mask, rationale_mask))  # never cut: the text was fitted in prompt_tokens
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
                batch = self.batch([requests[i] for i in idx])
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

    def _generation_kwargs(self, max_new_tokens: int, temperature: float, num_return_sequences: int) -> dict:
        """``generate`` settings: greedy when ``temperature`` is 0, else plain sampling; stops on every end token (not
        before :attr:`min_new_tokens`)."""
        kwargs = {
            "max_new_tokens": max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.end_ids,
            "do_sample": temperature > 0,
        }
        if self.min_new_tokens > 0:
            kwargs["min_new_tokens"] = min(self.min_new_tokens, max_new_tokens)
        if temperature > 0:
            kwargs.update(temperature=temperature, top_p=1.0, top_k=0, num_return_sequences=num_return_sequences)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs

    def _left_padded(self, prompts: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded prompt ids and attention mask, ``(B, W)`` each, on the model's device."""
        rows = [torch.tensor(p, dtype=torch.long) for p in prompts]
        pad_id = self.tokenizer.pad_token_id
        input_ids = pad_sequence(rows, batch_first=True, padding_value=pad_id, padding_side="left")  # (B, W)
        ones = [torch.ones(len(p), dtype=torch.long) for p in prompts]
        attention = pad_sequence(ones, batch_first=True, padding_value=0, padding_side="left")  # (B, W)
        return input_ids.to(self.device), attention.to(self.device)

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
        """Write rationales for ``texts`` (greedy when ``temperature`` is 0), in input order.

        Returns ``len(texts) * num_return_sequences`` token-id tuples, grouped by text.
        """
        if max_new_tokens <= 0:
            return [()] * (len(texts) * num_return_sequences)
        results: list[tuple[int, ...]] = []
        sampling = temperature > 0
        gen_kwargs = self._generation_kwargs(max_new_tokens, temperature, num_return_sequences)
        starts = range(0, len(texts), batch_size)
        with eval_mode(self.model):
            for s in tqdm(starts, desc="Writing rationales", disable=not show_progress_bar, unit="batch"):
                prompts = [self.prompt_tokens(t).ids for t in texts[s : s + batch_size]]
                input_ids, attention = self._left_padded(prompts)  # (B, W) each
                generated = self.model.generate(input_ids=input_ids, attention_mask=attention, **gen_kwargs)
                completions = generated[:, input_ids.shape[1] :].tolist()  # (B * R, new)
                if not sampling and num_return_sequences > 1:
                    completions = [c for c in completions for _ in range(num_return_sequences)]
                results.extend(tuple(self.rationale_tokens(c)) for c in completions)
        return results

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        max_new_tokens: int,
        temperature: float = 0.0,
        num_return_sequences: int = 1,
        pooling: str = "mean",
        batch_size: int = ENCODE_BATCH_SIZE,
        normalize: bool = True,
        show_progress_bar: bool = False,
    ) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
        """Write a rationale per text and pool text + rationale from the hidden states computed while generating.

        One ``generate`` call per batch (prompts sorted by length, so batches pad little; input order restored), plus
        one decode step for the last token (:class:`rollout.capture.HiddenStateCapture`): equal to
        :meth:`generate_rationales` then :meth:`embed` for the same tokens, without the second pass. The template
        tokens all prompts start with (system turn, user header) are run once per call and their KV cache reused by
        every batch (:attr:`share_prefix`). A budget of 0 embeds the text alone (one pooling forward).

        Returns:
            ``(N * R, H)`` float32 embeddings on the CPU and the ``N * R`` rationales (token ids), grouped by text.
        """
        r = num_return_sequences
        if max_new_tokens <= 0:
            emb = self.embed([EmbedRequest(t) for t in texts], pooling, batch_size, normalize, show_progress_bar)
            return emb.repeat_interleave(r, dim=0), [()] * (len(texts) * r)  # (N * R, H)
        job_args = (max_new_tokens, temperature, r, pooling)
        out, rationales = self._encode_batches(texts, job_args, None, batch_size, show_progress_bar)
        if normalize:
            out = torch.nn.functional.normalize(out, dim=-1)
        return out, rationales

    @torch.inference_mode()
    def encode_budgets(
        self,
        texts: Sequence[str],
        budgets: Sequence[int],
        pooling: str = "mean",
        batch_size: int = ENCODE_BATCH_SIZE,
        normalize: bool = True,
        show_progress_bar: bool = False,
    ) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
        """Embed every text with its greedy rationale cut at each of `budgets` tokens, from **one** generation at the
        largest budget: a causal model's states of the first `T` rationale tokens do not depend on later tokens, so
        the embedding at budget `T` pools the text's states and the first `T` rationale states already captured (a
        greedy rationale's first `T` tokens are the greedy rationale of budget `T`). Equal to :meth:`encode` at each
        budget separately; budget 0 is the text alone.

        Returns:
            ``(N, K, H)`` float32 embeddings on the CPU (`K = len(budgets)`, in the order given) and the `N`
            rationales written at the largest budget.
        """
        budgets = tuple(int(b) for b in budgets)
        if not budgets or min(budgets) < 0:
            raise ValueError(f"budgets must be a non-empty list of token counts >= 0, got {list(budgets)}.")
        if max(budgets) == 0:
            emb = self.embed([EmbedRequest(t) for t in texts], pooling, batch_size, normalize, show_progress_bar)
            return emb.unsqueeze(1).expand(-1, len(budgets), -1).clone(), [()] * len(texts)  # (N, K, H)
        out, rationales = self._encode_batches(
            texts, (max(budgets), 0.0, 1, pooling), budgets, batch_size, show_progress_bar
        )  # (N, K, H)
        if normalize:
            out = torch.nn.functional.normalize(out, dim=-1)
        return out, rationales

    def _encode_batches(
        self,
        texts: Sequence[str],
        job_args: tuple[int, float, int, str],
        budgets: tuple[int, ...] | None,
        batch_size: int,
        show_progress_bar: bool,
    ) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
        """The batching loop of :meth:`encode` / :meth:`encode_budgets`: prompts sorted by length, one generate call
        per batch, input order restored. Returns unnormalised ``(N * R, H)`` (or ``(N, K, H)`` with `budgets`)."""
        r = job_args[2]
        prompts = [self.prompt_tokens(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -len(prompts[i].ids))
        pieces: list[torch.Tensor] = []
        rationales: list[tuple[int, ...]] = [()] * (len(texts) * r)
        bar = tqdm(total=len(texts), desc="Encoding", unit="text", disable=not show_progress_bar)
        with eval_mode(self.model), bar:
            job = self._job(prompts, *job_args)
            job.budgets = budgets
            for s in range(0, len(order), batch_size):
                idx = order[s : s + batch_size]
                emb, ids = self._generate_and_pool([prompts[i] for i in idx], job)
                pieces.append(emb)  # (B * R, H) or (B, K, H)
                for k, i in enumerate(idx):
                    rationales[i * r : (i + 1) * r] = ids[k * r : (k + 1) * r]
                bar.update(len(idx))
                bar.set_postfix_str(f"{bar.n / max(bar.format_dict['elapsed'], 1e-9):.1f} texts/s")
        rows = (torch.tensor(order).unsqueeze(1) * r + torch.arange(r)).flatten()  # (N * R,) sorted -> input rows
        out = torch.empty(len(rows), *pieces[0].shape[1:])  # (N * R, H) or (N, K, H)
        out[rows] = torch.cat(pieces)
        return out, rationales

    def _job(
        self, prompts: Sequence[PromptTokens], max_new_tokens: int, temperature: float, r: int, pooling: str
    ) -> EncodeJob:
        """The settings of one :meth:`encode` call, with the shared prompt prefix run once (its KV cache)."""
        prefix = shared_prefix_length(prompts) if self.share_prefix else 0
        cache = None
        if prefix:
            head = torch.tensor([list(prompts[0].ids[:prefix])], device=self.device)  # (1, L)
            cache = output_cache(backbone_of(self.model)(input_ids=head, use_cache=True))
        return EncodeJob(max_new_tokens, temperature, r, pooling, prefix, cache)

    def _generate_and_pool(
        self, prompts: Sequence[PromptTokens], job: EncodeJob
    ) -> tuple[torch.Tensor, list[tuple[int, ...]]]:
        """One generate call over ``prompts`` with the states captured; ``(B * R, H)`` unnormalised embeddings and
        the ``B * R`` rationales. Layout ``[shared prefix | left-padded rest of the prompt | rationale]``: the prefix
        comes from the job's cache, the padding in between is masked, positions follow the real tokens."""
        fan = job.r if job.temperature > 0 else 1  # greedy: one rationale per prompt, repeated below
        rest, attention = self._left_padded([p.ids[job.prefix :] for p in prompts])  # (B, S) each
        rest, attention = rest.repeat_interleave(fan, dim=0), attention.repeat_interleave(fan, dim=0)  # (B', S)
        width, b = rest.shape[1], rest.shape[0]
        gen_kwargs = self._generation_kwargs(job.max_new_tokens, job.temperature, 1)
        if job.prefix:
            head = torch.tensor(prompts[0].ids[: job.prefix], device=self.device).expand(b, -1)  # (B', L)
            rest = torch.cat([head, rest], dim=1)  # (B', L + S)
            attention = torch.cat([torch.ones_like(head), attention], dim=1)  # (B', L + S)
            cache = copy.deepcopy(job.prefix_cache)
            cache.batch_repeat_interleave(b)
            gen_kwargs[cache_keyword(self.model)] = cache
        with HiddenStateCapture(backbone_of(self.model), self.end_ids) as capture:
            sequences = self.model.generate(input_ids=rest, attention_mask=attention, **gen_kwargs)  # (B', L+S+n)
            capture.final_step(sequences, attention)
            states = capture.states(width, b)  # (B', S + n, H): the prefix's states are not recorded (nor pooled)
        if states is None or not capture.complete:
            raise RuntimeError(
                "generate did not run as one prompt pass plus one decode step per token (an assisted, beam, "
                "chunked-prefill or compiled generation?); use Embedder.generate_rationales then Embedder.embed."
            )
        completions = sequences[:, job.prefix + width :]  # (B', n)
        lengths = count_rationale_tokens(completions, self.end_ids)  # (B',)
        pooled = pool_captured(
            states,
            torch.tensor([len(p.ids) - job.prefix for p in prompts]).repeat_interleave(fan),
            torch.tensor([[p.start - job.prefix, p.end - job.prefix] for p in prompts]).repeat_interleave(fan, dim=0),
            lengths,
            job.pooling,
            normalize=False,
            prompt_width=width,
        )  # (B', H)
        ids = [tuple(row[:n]) for row, n in zip(completions.tolist(), lengths.tolist(), strict=True)]
        if job.budgets is not None:  # greedy, r == 1: the same states pooled with the rationale cut at each budget
            pooled = torch.stack(
                [
                    pool_captured(
                        states,
                        torch.tensor([len(p.ids) - job.prefix for p in prompts]),
                        torch.tensor([[p.start - job.prefix, p.end - job.prefix] for p in prompts]),
                        lengths.clamp(max=budget),
                        job.pooling,
                        normalize=False,
                        prompt_width=width,
                    )
                    for budget in job.budgets
                ],
                dim=1,
            )  # (B, K, H)
            return pooled, ids
        if fan != job.r:
            pooled = pooled.repeat_interleave(job.r, dim=0)  # (B * R, H)
            ids = [x for x in ids for _ in range(job.r)]
        return pooled, ids
