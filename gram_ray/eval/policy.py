"""A policy measured on questions with known answers: greedy accuracy, and best-of-n accuracy of sampled
candidates selected by a reward (the GRAM-R2 paper's Figure 3).

Best-of-n for every n = 1 .. N comes from one table per question: P(candidate i beats candidate j) over all
N samples, which a pairwise judge fills in one call (``group_rewards.win_matrices``; each distinct pair of
answers asked once). The best of the first n is the one with the highest mean win probability against
the other n - 1, the earliest on a tie, so one sample set and one judge pass give the whole curve, and
the n-th point re-ranks the same candidates the (n-1)-th saw plus one. The exact checker's table (1 for a
right answer over a wrong one, 0.5 between two alike) makes the oracle's curve: pass@n.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gram_ray.apply.answer_rewards import answer_text
from gram_ray.apply.distinct_judge import DistinctComparisons
from gram_ray.apply.group_rewards import win_matrices, win_rates
from gram_ray.apply.ranking import Judge, RankTask
from gram_ray.judging.requests import chat_ids
from gram_ray.tinykit.addition import final_answer

Table = Sequence[Sequence[float]]


def generate(model_dir: str | Path, questions: Sequence[str], samples: int = 1, temperature: float = 0.0,
             max_new_tokens: int = 32, seed: int = 0, batch_size: int = 256) -> list[list[str]]:
    """``samples`` completions per question from a Hugging Face causal LM on the CPU, prompted with its chat
    template as training and TRL prompt it; greedy when ``temperature`` is 0."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompts = [chat_ids(tokenizer, q) for q in questions for _ in range(samples)]
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0} if temperature > 0 else {"do_sample": False}
    torch.manual_seed(seed)
    texts: list[str] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        width = max(map(len, batch))
        ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in batch])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **sampling)
        texts += tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    return [texts[i * samples : (i + 1) * samples] for i in range(len(questions))]


def correct(completion: str, total: int) -> bool:
    """Whether a worked-solution completion ends with the right sum."""
    return final_answer(completion) == total


def right_shares(samples: Sequence[Sequence[str]], totals: Sequence[int]) -> list[float]:
    """Per question, the share of its sampled completions whose final sum is right. Their mean is the
    policy's expected oracle reward at the sampling temperature: what GRPO raises, which can move while the
    greedy answer stays put."""
    if len(samples) != len(totals) or not totals or not all(samples):
        raise ValueError(f"{len(samples)} sample lists (each non-empty) for {len(totals)} questions")
    return [sum(correct(c, t) for c in cs) / len(cs) for cs, t in zip(samples, totals, strict=True)]


def accuracy(completions: Sequence[str], totals: Sequence[int]) -> float:
    """Share of completions (one per question) whose final sum is right."""
    if len(completions) != len(totals) or not totals:
        raise ValueError(f"{len(completions)} completions for {len(totals)} questions")
    return sum(correct(c, t) for c, t in zip(completions, totals, strict=True)) / len(totals)


def best_of_first(table: Table, n: int) -> int:
    """Index of the best of the first ``n`` candidates: highest mean P(beats each of the other n - 1)."""
    rates = win_rates([list(row[:n]) for row in table[:n]])
    return max(range(n), key=lambda i: (rates[i], -i))


def best_of_n_accuracy(tables: Sequence[Table], right: Sequence[Sequence[bool]], max_n: int) -> list[float]:
    """Accuracy of the selected candidate for n = 1 .. ``max_n`` (``right[q][i]``: candidate i of question q
    is right)."""
    if len(tables) != len(right) or not tables:
        raise ValueError(f"{len(tables)} tables for {len(right)} questions")
    if any(len(t) < max_n or len(r) < max_n for t, r in zip(tables, right, strict=True)):
        raise ValueError(f"best-of-{max_n} needs {max_n} candidates per question")
    return [sum(r[best_of_first(t, n)] for t, r in zip(tables, right, strict=True)) / len(tables)
            for n in range(1, max_n + 1)]


def oracle_table(right: Sequence[bool]) -> list[list[float]]:
    """The exact checker as a pairwise table: a right answer beats a wrong one, two alike tie."""
    return [[0.5 + 0.5 * (float(a) - float(b)) for b in right] for a in right]


def judge_tables(judge: Judge, questions: Sequence[str], candidates: Sequence[Sequence[str]],
                 both_orders: bool = True) -> list[list[list[float]]]:
    """Each question's table of P(candidate i beats j), the judge shown the candidates' final answers."""
    tasks = [RankTask(q, [answer_text(c) for c in cs]) for q, cs in zip(questions, candidates, strict=True)]
    return win_matrices(DistinctComparisons(judge), tasks, both_orders)
