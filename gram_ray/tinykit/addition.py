"""A synthetic preference task with a verifiable answer: which of two sums of two-digit numbers is right.

It is the demo's and the tests' stand-in for real preference data: both answers have the same number of
digits, so length says nothing; the wrong answer is a typical slip (off by 1, 2, 9, 10, 11 or a forgotten
carry); the correct side is balanced. The "digit-verify" rationale works the sum out column by column,
then checks each response digit by digit against it ("A: 85 = 8 5, 8 8 same 5 5 same, yes.") and
concludes. Each comparison is of two single digits, a 10 x 10 table that pre-training covers whole; a
2-layer judge asked instead whether two whole-number tokens are equal generalises that test to number
pairs it never saw compared on some draws and not on others. Ground truth rides along in every row's
``meta`` (also on unlabeled rows) so pipelines can measure pseudo-label accuracy; training reads only the
pair.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from gram_ray.data.schemas import LABELS, PAIR_SCHEMA, RATIONALE_SCHEMA, other_label, pair_id
from gram_ray.prompts import judge_prompt, parse_answer, proof_to_target, prover_prompt

SOURCE = "tinykit-addition"
OPERANDS = range(10, 50)
HELDOUT_SHARE = 0.2  # of the unordered operand pairs, reserved for the held-out split
WRONG_OFFSETS = (1, -1, 2, -2, 9, -9, 10, -10, 11, -11)
# The tokens a digit-verify judgement turns on (each digit comparison, each response's verdict and the
# answer label), as decoded text; the kit tokenizer keeps each one a single token, for decision-token
# loss weighting.
DECISION_WORDS = (" same", " diff", " yes", " no", "A", "B")
PRETRAIN_SCHEMA = pa.schema(
    [pa.field("prompt", pa.string(), nullable=False), pa.field("completion", pa.string(), nullable=False)]
)


@dataclass(frozen=True)
class TaskSizes:
    """Rows per split; the defaults are the probe's."""

    seed: int = 200
    labeled: int = 2000
    unlabeled_rounds: int = 2
    unlabeled_per_round: int = 2000
    heldout: int = 400
    pretrain: int = 20000


SMALL_SIZES = TaskSizes(seed=16, labeled=32, unlabeled_rounds=2, unlabeled_per_round=24, heldout=24, pretrain=64)


@dataclass(frozen=True)
class Problem:
    """One comparison: ``a + b`` with the correct and a wrong answer, the correct one on ``correct_side``."""

    a: int
    b: int
    wrong: int
    wrong_kind: str
    correct_side: str

    @property
    def total(self) -> int:
        return self.a + self.b

    @property
    def responses(self) -> tuple[str, str]:
        right, wrong = str(self.total), str(self.wrong)
        return (right, wrong) if self.correct_side == "A" else (wrong, right)


@dataclass(frozen=True)
class TaskFiles:
    seed_rationales: Path
    labeled: Path
    unlabeled: list[Path]
    heldout: Path
    pretrain: Path


def question(a: int, b: int) -> str:
    return f"What is {a}+{b}?"


def worked_solution(a: int, b: int) -> str:
    """Column addition written out, ones then tens: '7+8=15, carry 1. 3+4+1=8. sum 85.'"""
    ones = a % 10 + b % 10
    carry = ones // 10
    tens = a // 10 + b // 10 + carry
    tens_line = f"{a // 10}+{b // 10}+{carry}={tens}." if carry else f"{a // 10}+{b // 10}={tens}."
    return f"{a % 10}+{b % 10}={ones}, carry {carry}. {tens_line} sum {a + b}."


def checked_response(a: int, b: int, response_a: str, response_b: str, side: str) -> dict[str, str]:
    """A pre-training row that checks one named response of two against the worked solution: finding a
    number in the prompt, copying it, spelling it digit by digit and comparing digits, skills an LLM
    brings from pre-training and a tiny model from scratch lacks. No preference: one response is
    checked, none is preferred to the other."""
    answer = response_a if side == "A" else response_b
    return {"prompt": f"{question(a, b)}\nResponse A: {response_a}\nResponse B: {response_b}\nCheck response {side}.",
            "completion": f"{worked_solution(a, b)} {check_line(side, answer, str(a + b))}"}


def pretrain_record(a: int, b: int, rng: random.Random) -> dict[str, str]:
    """Half worked solutions of the bare question, a quarter worked solutions of the question as a judge
    sees it (two responses after it: the sum must come out right in that context too), a quarter one
    response of two checked; the right answer on either side, the wrong one a plausible slip."""
    wrong = rng.choice(sorted(wrong_answers(a, b)))
    right_first = rng.random() < 0.5
    response_a, response_b = (str(a + b), str(wrong)) if right_first else (str(wrong), str(a + b))
    kind = rng.random()
    if kind < 0.5:
        return {"prompt": question(a, b), "completion": worked_solution(a, b)}
    if kind < 0.75:
        return {"prompt": judge_prompt("compact", question(a, b), response_a, response_b),
                "completion": worked_solution(a, b)}
    return checked_response(a, b, response_a, response_b, rng.choice(LABELS))


def check_line(side: str, response: str, total: str) -> str:
    """One response checked against the written sum: quoted, spelled, compared digit by digit, judged."""
    pairs = " ".join(f"{x} {y} {'same' if x == y else 'diff'}" for x, y in zip(response, total, strict=False))
    return f"{side}: {response} = {' '.join(response)}, {pairs}, {'yes' if response == total else 'no'}."


def digit_verify(a: int, b: int, response_a: str, response_b: str) -> str:
    """The worked solution, each response checked against the written sum, and the conclusion."""
    total = str(a + b)
    winner = "A" if response_a == total else "B"
    checks = " ".join(check_line(side, resp, total) for side, resp in (("A", response_a), ("B", response_b)))
    return f"{worked_solution(a, b)} {checks} Conclusion: response {winner}."


def wrong_answers(a: int, b: int) -> dict[int, str]:
    """Plausible wrong sums with as many digits as the right one, each with the slip that makes it."""
    total = a + b
    out: dict[int, str] = {}
    if a % 10 + b % 10 >= 10:
        out[total - 10] = "forgot_carry"
    for offset in WRONG_OFFSETS:
        out.setdefault(total + offset, f"{offset:+d}")
    return {w: kind for w, kind in out.items() if w > 0 and len(str(w)) == len(str(total))}


_SUM = re.compile(r"\bsum (\d+)\.")
_STEPS = re.compile(r"(\d)\+(\d)=(\d+), carry (\d)\. (\d)\+(\d)(?:\+(\d))?=(\d+)\. sum \d+\.")
_CHECK = re.compile(r"(?<![A-Za-z])([AB]): (\S+) = ([\d ]+?), ((?:\d \d (?:same|diff) ?)+), (yes|no)\.")


@dataclass(frozen=True)
class Check:
    """One response's check as a rationale writes it: ``A: 85 = 8 5, 8 8 same 5 5 same, yes.``"""

    quoted: str
    spelled: str  # the quote's digits, space-separated
    pairs: tuple[tuple[str, str, str], ...]  # (response digit, sum digit, "same" | "diff")
    word: str  # "yes" | "no"

    def problem(self, response: str, written: str) -> str | None:
        """Why this check is not a true check of ``response`` against the written sum, or None."""
        if self.quoted != response:
            return f"quoted as {self.quoted!r}, response is {response!r}"
        if self.spelled.split() != list(response):
            return f"{self.quoted} spelled as {self.spelled!r}"
        if [(x, y) for x, y, _ in self.pairs] != list(zip(response, written, strict=False)) \
                or len(response) != len(written):
            return f"digits of {response} not paired with the written sum {written}"
        for x, y, relation in self.pairs:
            if (x == y) != (relation == "same"):
                return f"'{x} {y} {relation}' is false"
        if (response == written) != (self.word == "yes"):
            return f"verdict '{self.word}' is wrong for {response} vs {written}"
        return None


def read_checks(rationale: str) -> dict[str, list[Check]]:
    """Every response check a rationale writes, by side."""
    checks: dict[str, list[Check]] = {side: [] for side in LABELS}
    for side, quoted, spelled, pairs, word in _CHECK.findall(rationale):
        triples = re.findall(r"(\d) (\d) (same|diff)", pairs)
        checks[side].append(Check(quoted, spelled.strip(), tuple(triples), word))
    return checks


def verify_rationale(pair_row: Mapping, rationale: str, label: str) -> str | None:
    """None when a digit-verify rationale supports ``label``, else a short reason.

    "Supports" means: one written sum; each response checked once, quoted as it is in the pair, spelled
    and compared digit by digit with that sum, every comparison and verdict true; the one "yes" on the
    label's side; and the sum proved: worked steps whose arithmetic is true (ones, carry, tens) and give
    that sum. The steps are not checked against the question's operands, so a proof can still be wrong
    about the question; but a sum copied from the labelled response, with steps that do not add up to it,
    is no proof. This is a task's own checker, the kind of filter a user with a verifiable task plugs in
    as ``filters.verifier: gram_ray.tinykit.addition:verify_rationale``; the demo's headline arm runs
    without it, on the paper's task-agnostic filters alone.
    """
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    sums = _SUM.findall(rationale)
    if len(sums) != 1:
        return "no sum line" if not sums else "several sum lines"
    written = sums[0]
    supported = []
    for side, found in read_checks(rationale).items():
        if len(found) != 1:
            return f"no check of {side}" if not found else f"several checks of {side}"
        problem = found[0].problem(str(pair_row[f"response_{side.lower()}"]).strip(), written)
        if problem:
            return f"{side}: {problem}"
        if found[0].word == "yes":
            supported.append(side)
    if supported != [label]:
        if not supported:
            return "no response matches the written sum"
        if len(supported) == 2:
            return "both responses match the written sum"
        return f"rationale supports {other_label(label)}, label is {label}"
    return _unproved_sum(rationale, written)


def rationale_steps(pair_row: Mapping, rationale: str) -> dict[str, bool]:
    """Which steps of a digit-verify judgement are right, for the report's step table (the pipelines'
    ``report.step_checker``): ``sum``, the one written sum is the true sum; ``quote``, each response is
    checked once and quoted exactly; ``verdict``, each check's digit comparisons and yes/no are true of
    what it compares (a wrong sum compared correctly still counts); ``label``, the final answer is the
    gold label. ``rationale`` is the judge's whole text, its ``<answer>`` block included; the truth comes
    from the row's ``meta``."""
    meta = json.loads(pair_row.get("meta") or "{}")
    sums = _SUM.findall(rationale)
    checks = read_checks(rationale)
    once = all(len(found) == 1 for found in checks.values())
    written = sums[0] if len(sums) == 1 else None
    return {
        "sum": written is not None and int(written) == meta.get("sum"),
        "quote": once and all(checks[side][0].quoted == str(pair_row[f"response_{side.lower()}"]).strip()
                              for side in LABELS),
        "verdict": once and written is not None
        and all(found[0].problem(found[0].quoted, written) is None for found in checks.values()),
        "label": parse_answer(rationale) == meta.get("gold_label"),
    }


def _unproved_sum(rationale: str, written: str) -> str | None:
    """Why the worked steps do not prove the written sum, or None when they do."""
    steps = _STEPS.search(rationale)
    if steps is None:
        return "no worked steps before the sum"
    a1, b1, ones, carry, a10, b10, carried, tens = steps.groups()
    if int(a1) + int(b1) != int(ones) or int(carry) != int(ones) // 10:
        return f"false step: {a1}+{b1}={ones}, carry {carry}"
    if int(carry) != int(carried or 0) or int(a10) + int(b10) + int(carry) != int(tens):
        return f"false step: {steps.group(0).split('. ')[1]}"
    if int(written) != int(tens) * 10 + int(ones) % 10:  # the steps end in the one sum line, ``written``
        return f"the steps give {int(tens) * 10 + int(ones) % 10}, not the written sum {written}"
    return None


def pair_record(problem: Problem, labeled: bool = True) -> dict:
    """A PAIR_SCHEMA row; ground truth in ``meta`` even when ``label`` is withheld."""
    response_a, response_b = problem.responses
    prompt = question(problem.a, problem.b)
    meta = {
        "task": "addition",
        "a": problem.a,
        "b": problem.b,
        "sum": problem.total,
        "wrong": problem.wrong,
        "wrong_kind": problem.wrong_kind,
        "gold_label": problem.correct_side,
    }
    return {
        "id": pair_id(prompt, response_a, response_b),
        "prompt": prompt,
        "response_a": response_a,
        "response_b": response_b,
        "label": problem.correct_side if labeled else None,
        "source": SOURCE,
        "meta": json.dumps(meta, sort_keys=True),
    }


def seed_rationale_record(problem: Problem) -> dict:
    """A RATIONALE_SCHEMA row with the correct digit-verify rationale, as a human would write it."""
    row = pair_record(problem)
    rationale = digit_verify(problem.a, problem.b, row["response_a"], row["response_b"])
    return {**row, "rationale": rationale, "target": proof_to_target(rationale, row["label"]),
            "producer": "human", "round": 0, "score": None}


def final_answer(completion: str) -> int | None:
    """The sum a worked solution ends with ("... sum 85." -> 85), or None when it states none: what a
    policy's completion answers, for the exact checker and for judges trained on bare answers."""
    sums = _SUM.findall(completion)
    return int(sums[-1]) if sums else None


def split_questions(seed: int, split: Literal["train", "heldout"], count: int) -> list[tuple[int, int]]:
    """``count`` distinct operand pairs (a, b) from the kit's ``split`` for ``seed``, in a seeded order: the
    held-out ones are pairs that no training row of that kit uses, in either order."""
    train_ops, heldout_ops = split_operands(random.Random(seed))
    pool = train_ops if split == "train" else heldout_ops
    if count > len(pool):
        raise ValueError(f"asked for {count} {split} questions, the split has {len(pool)}")
    return random.Random(f"{seed}/{split}-questions").sample(pool, count)


def split_operands(rng: random.Random) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(training, held-out) ordered operand pairs; {a, b} and {b, a} always land on the same side."""
    unordered = [(a, b) for a in OPERANDS for b in OPERANDS if a <= b]
    rng.shuffle(unordered)
    cut = round(len(unordered) * HELDOUT_SHARE)

    def both_orders(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return sorted({o for a, b in pairs for o in ((a, b), (b, a))})

    return both_orders(unordered[cut:]), both_orders(unordered[:cut])


def draw_problems(operands: list[tuple[int, int]], counts: list[int], rng: random.Random) -> list[list[Problem]]:
    """Problems for several splits, no comparison repeated within or across them (even side-swapped),
    each split with the correct answer on side A for half its rows (the odd row random)."""
    candidates = [(a, b, w, kind) for a, b in operands for w, kind in sorted(wrong_answers(a, b).items())]
    if sum(counts) > len(candidates):
        raise ValueError(f"asked for {sum(counts)} distinct problems, only {len(candidates)} exist")
    rng.shuffle(candidates)
    out, start = [], 0
    for n in counts:
        sides = ["A", "B"] * (n // 2) + ([rng.choice(LABELS)] if n % 2 else [])
        rng.shuffle(sides)
        chunk = candidates[start : start + n]
        out.append([Problem(a, b, w, kind, side) for (a, b, w, kind), side in zip(chunk, sides, strict=True)])
        start += n
    return out


def write_task(out_dir: str | Path, seed: int = 0, sizes: TaskSizes = TaskSizes()) -> TaskFiles:
    """Write every split's Parquet file under ``out_dir``; deterministic for a given seed and sizes.

    The held-out set, the pre-training rows and the training splits draw from streams of their own, and
    the training splits in the order seed, labeled, rounds: a different round size leaves the held-out set,
    the pre-training data, the seed set and the labeled set as they were, so recipes compare on one draw."""
    out_dir = Path(out_dir)
    (out_dir / "unlabeled").mkdir(parents=True, exist_ok=True)
    for stale in (out_dir / "unlabeled").glob("round_*.parquet"):  # a folder read whole must hold only ours
        stale.unlink()
    train_ops, heldout_ops = split_operands(random.Random(seed))
    rounds = [sizes.unlabeled_per_round] * sizes.unlabeled_rounds
    train_rng = random.Random(f"{seed}/train")
    seed_set, labeled, *unlabeled = draw_problems(train_ops, [sizes.seed, sizes.labeled, *rounds], train_rng)
    (heldout,) = draw_problems(heldout_ops, [sizes.heldout], random.Random(f"{seed}/heldout"))
    pretrain_rng = random.Random(f"{seed}/pretrain")
    pretrain_ops = [pretrain_rng.choice(train_ops) for _ in range(sizes.pretrain)]

    files = TaskFiles(
        seed_rationales=out_dir / "seed_rationales.parquet",
        labeled=out_dir / "labeled.parquet",
        unlabeled=[out_dir / "unlabeled" / f"round_{r:02d}.parquet" for r in range(1, len(unlabeled) + 1)],
        heldout=out_dir / "heldout.parquet",
        pretrain=out_dir / "pretrain.parquet",
    )
    _write(files.seed_rationales, [seed_rationale_record(p) for p in seed_set], RATIONALE_SCHEMA)
    _write(files.labeled, [pair_record(p) for p in labeled], PAIR_SCHEMA)
    for path, problems in zip(files.unlabeled, unlabeled, strict=True):
        _write(path, [pair_record(p, labeled=False) for p in problems], PAIR_SCHEMA)
    _write(files.heldout, [pair_record(p) for p in heldout], PAIR_SCHEMA)
    _write(files.pretrain, [pretrain_record(a, b, pretrain_rng) for a, b in pretrain_ops], PRETRAIN_SCHEMA)
    return files


def corpus() -> Iterator[str]:
    """The task's text for tokenizer training: every question with its worked solution, and one compact
    judge prompt, prover prompt and RM target per question. Seed-independent, so every kit shares a
    tokenizer whatever its seed or size."""
    for a in OPERANDS:
        for b in OPERANDS:
            wrongs = sorted(wrong_answers(a, b))
            problem = Problem(a, b, wrongs[(a * 7 + b) % len(wrongs)], "", "A" if (a + b) % 2 else "B")
            response_a, response_b = problem.responses
            label = problem.correct_side
            yield question(a, b)
            yield worked_solution(a, b)
            yield checked_response(a, b, response_a, response_b, label)["prompt"]
            yield judge_prompt("compact", question(a, b), response_a, response_b)
            yield prover_prompt("compact", question(a, b), response_a, response_b, label)
            yield proof_to_target(digit_verify(a, b, response_a, response_b), label)


def _write(path: Path, rows: list[dict], schema: pa.Schema) -> None:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
