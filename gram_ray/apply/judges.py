"""Pairwise judges on vLLM: the prompt, the sampling and the reading of verdicts and probabilities.

Two kinds of reward model are served the same way:

* ``reasoning`` (GRAM-R2): the judge writes ``<think>...</think><answer>A|B</answer>``; the verdict is
  parsed from the text and its probability is read at the generated answer token, with the softmax taken
  over the label tokens only. ``votes`` = k samples in one request (n = k) give voting@k.
* ``label`` (GRAM): the first generated token is the label; P(A) is the softmax over the label tokens'
  logits at that position (one token generated, nothing sampled).

Label probabilities come from vLLM's ``logprob_token_ids``: exact log-probabilities of the label tokens
(``A``/``B`` and their leading-space variants when those are single tokens) at every generated
position, whatever their rank. ``JudgeCore`` is the engine-free part shared by the offline judge here and
the reward server's async engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gram_ray.apply.ranking import PairItem
from gram_ray.config import EngineConfig, JudgeConfig
from gram_ray.judging.engine import llm_kwargs
from gram_ray.judging.requests import chat_ids, too_long
from gram_ray.judging.voting import Sample, read_sample, summarise_pass
from gram_ray.prompts import judge_prompt
from gram_ray.prompts.verdicts import LabelTokens

JudgeKind = Literal["reasoning", "label"]
@dataclass(frozen=True)
class Judgement:
    """One ordered pair's judgement: the k sampled texts, their verdicts and votes, the decision, P(A)."""

    texts: tuple[str, ...]
    verdicts: tuple[str | None, ...]
    votes_a: int
    votes_b: int
    votes_none: int
    answer: str | None  # majority verdict; a tie goes to the side P(A) favours, else None
    p_a: float  # mean P(A) over the samples' answer tokens; the verdict's 0/1 when no token was found;
    #             0.5 without any verdict


def judgement_of(samples: Sequence[Sample]) -> Judgement:
    """Summarise the ``Sample``s of one prompt with the label stage's own vote arithmetic (``judging.voting``)."""
    result = summarise_pass("ab", samples)
    p_a = result.p_a
    if p_a is None:
        p_a = 0.5 if result.answer is None else float(result.answer == "A")
    return Judgement(texts=tuple(s.text for s in samples), verdicts=tuple(s.answer for s in samples),
                     votes_a=result.votes_a, votes_b=result.votes_b, votes_none=result.votes_none,
                     answer=result.answer, p_a=p_a)


@dataclass
class JudgeCore:
    """Engine-free judging: prompt token ids in, ``SamplingParams`` out, ``RequestOutput`` -> Judgement."""

    tokenizer: Any
    kind: JudgeKind = "reasoning"
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    max_model_len: int | None = None  # when set, longer prompts are refused before they reach the engine
    labels: LabelTokens = field(init=False)

    def __post_init__(self) -> None:
        if self.kind not in ("reasoning", "label"):
            raise ValueError(f"judge kind must be 'reasoning' or 'label', got {self.kind!r}")
        self.labels = LabelTokens.from_tokenizer(self.tokenizer)

    def prompt_ids(self, item: PairItem) -> list[int]:
        """The chat-templated judge prompt for (prompt, first, second), as token ids; a prompt the engine
        would refuse raises (one overlong prompt would fail the engine's whole batch)."""
        ids = self._templated(item)
        reason = self._refusal_of(ids)
        if reason:
            raise ValueError(f"judge prompt for {item[0][:60]!r}...: {reason}")
        return ids

    def refusal(self, item: PairItem) -> str | None:
        """Why the engine would refuse this item's judge prompt, by the stages' rule
        (``judging.requests.too_long``), or None; lets a caller quarantine the item instead."""
        return self._refusal_of(self._templated(item))

    def _templated(self, item: PairItem) -> list[int]:
        prompt, first, second = item
        return chat_ids(self.tokenizer, judge_prompt(self.judge.template, prompt, first, second))

    def _refusal_of(self, ids: list[int]) -> str | None:
        return too_long(len(ids), self.max_model_len) if self.max_model_len else None

    def sampling(self, votes: int | None = None) -> dict[str, Any]:
        """``SamplingParams`` keyword arguments: one label token, or k reasoning samples (n = k)."""
        if self.kind == "label":
            return {"n": 1, "max_tokens": 1, "temperature": 0.0, "logprob_token_ids": self.labels.ids}
        k = votes or self.judge.votes
        if k > 1 and self.judge.temperature == 0:
            raise ValueError("voting@k with k > 1 needs temperature > 0 (greedy samples are identical)")
        return {"n": k, "max_tokens": self.judge.max_tokens, "temperature": self.judge.temperature,
                "top_p": self.judge.top_p, "logprob_token_ids": self.labels.ids}

    def sampling_params(self, votes: int | None = None) -> Any:
        from vllm import SamplingParams

        return SamplingParams(**self.sampling(votes))

    def sample(self, text: str, token_ids: Sequence[int], logprobs: Sequence[Mapping] | None) -> Sample:
        """One generated sequence as a ``Sample`` (verdict and P(A) at its answer token)."""
        if self.kind == "reasoning":
            return read_sample(text, list(token_ids), logprobs, self.labels)
        p = self.labels.p_a(logprobs[0]) if logprobs else None
        return Sample(text, None if p is None or p == 0.5 else ("A" if p > 0.5 else "B"), p)

    def read(self, request_output: Any) -> Judgement:
        return judgement_of([self.sample(o.text, o.token_ids, o.logprobs) for o in request_output.outputs])


class OfflineJudge:
    """A judge on an in-process ``vllm.LLM``; one ``generate`` call per batch of items.

    Callable as a ranking ``Judge`` (items -> P(first better)); ``calls`` and ``requests`` count engine
    calls and prompts sent, which is what batching promises are about.
    """

    def __init__(self, llm: Any, kind: JudgeKind = "reasoning", judge: JudgeConfig | None = None):
        self.llm = llm
        self.core = JudgeCore(llm.get_tokenizer(), kind, judge or JudgeConfig(),
                              llm.llm_engine.model_config.max_model_len)
        self.calls = 0
        self.requests = 0

    @classmethod
    def from_config(cls, engine: EngineConfig, kind: JudgeKind = "reasoning",
                    judge: JudgeConfig | None = None) -> OfflineJudge:
        from vllm import LLM

        return cls(LLM(**llm_kwargs(engine)), kind, judge)

    def judge(self, items: Sequence[PairItem], votes: int | None = None, seeds: Sequence[int] | None = None
              ) -> list[Judgement]:
        """One judgement per item; ``seeds`` gives each item's request a sampling seed (vLLM seeds its k
        samples seed, seed + 1, ...), so its samples do not depend on what else is in the batch: the
        label stage seeds its requests this way."""
        if not items:
            return []
        from vllm import SamplingParams, TokensPrompt

        if seeds is not None and len(seeds) != len(items):
            raise ValueError(f"{len(seeds)} seeds for {len(items)} items")
        prompts = [TokensPrompt(prompt_token_ids=self.core.prompt_ids(item)) for item in items]
        sampling = self.core.sampling(votes)
        params = (SamplingParams(**sampling) if seeds is None
                  else [SamplingParams(**sampling, seed=seed) for seed in seeds])
        self.calls += 1
        self.requests += len(prompts)
        outputs = self.llm.generate(prompts, params, use_tqdm=len(prompts) > 64)
        return [self.core.read(out) for out in outputs]

    def refusal(self, item: PairItem) -> str | None:
        return self.core.refusal(item)

    def __call__(self, items: Sequence[PairItem]) -> list[float]:
        return [j.p_a for j in self.judge(items)]

