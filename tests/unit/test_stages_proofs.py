"""Proof score and selection, and the post-processing of prover outputs, against hand computations."""

from __future__ import annotations

import pytest

from gram_ray.judging.proofs import Candidate, choose, is_wellformed, sequence_logprob, specificity
from gram_ray.stages.prove import aggregate_proofs, parse_proof, parse_unconditional
from gram_ray.stages.rows import Settled


def ray_logprobs(*positions: dict[int, float]) -> list[dict]:
    """ray.data.llm's per-position format: {token_id: {"logprob", "rank", "decoded_token"}}."""
    return [{t: {"logprob": v, "rank": 1, "decoded_token": "x"} for t, v in pos.items()} for pos in positions]


def test_specificity_by_hand():
    # log p(proof | x, l) = -2, log p(proof) = -10: the input explains 80% of the surprise
    assert specificity(-2.0, -10.0) == pytest.approx(-0.2)
    assert specificity(-10.0, -10.0) == pytest.approx(-1.0)
    assert specificity(-3.0, 0.0) is None


def test_sequence_logprob_reads_each_token_at_its_own_position():
    logprobs = [{4: -0.5, 9: -3.0}, {7: -1.25}, {1: -0.25, 2: -9.0}]
    assert sequence_logprob([4, 7, 1], logprobs) == pytest.approx(-2.0)
    with pytest.raises(ValueError):
        sequence_logprob([4, 7], [{4: -0.5}])


def test_wellformed_means_non_empty_and_free_of_reasoning_tags():
    assert is_wellformed("7+8=15. sum 85.")
    assert not is_wellformed("   ")
    assert not is_wellformed("sum 85 <answer>A</answer>")


def test_choose_the_most_specific_wellformed_proof():
    cands = [
        Candidate(0, "plain", 5, -8.0, -10.0),  # -0.8
        Candidate(1, "specific", 5, -2.0, -10.0),  # -0.2
        Candidate(2, "<think>tagged</think>", 5, -0.1, -10.0),  # best score but not well formed
        Candidate(3, "unscored", 5, -1.0, None),
    ]
    assert choose(cands, "specificity").sample == 1
    assert choose(cands, "first").sample == 0
    tie = [Candidate(4, "b", 1, -1.0, -2.0), Candidate(3, "a", 1, -1.0, -2.0)]
    assert choose(tie, "specificity").sample == 3
    assert choose([Candidate(0, "only", 1, -1.0, None)], "specificity").sample == 0
    assert choose([Candidate(0, "", 0, None, None)], "first") is None
    assert choose([Candidate(0, "x", 1, -1.0, None), Candidate(1, "y", 1, -1.0, None)], "specificity") is None


def test_parse_proof_sums_the_sampled_tokens_logprobs():
    row = {"generated_text": " 7+8=15. \n", "generated_tokens": [3, 5, 2],
           "logprobs": ray_logprobs({3: -0.5}, {5: -1.5}, {2: -0.25})}
    assert parse_proof(row, {}) == {"proof": "7+8=15.", "token_ids": [3, 5, 2], "logp_cond": pytest.approx(-2.25)}


def test_parse_unconditional_scores_only_the_proof_span():
    row = {"prompt_token_ids": [0, 4, 3, 5, 2],
           "prompt_logprobs": [None, *ray_logprobs({4: -9.0}, {3: -1.0}, {5: -2.0}, {2: -0.5})]}
    assert parse_unconditional(row, {"prefix_len": 2}) == {"logp_uncond": pytest.approx(-3.5)}


def test_aggregate_proofs_keeps_the_chosen_proof_as_target():
    pair = {"id": "p1", "prompt": "q", "response_a": "1", "response_b": "2", "label": "B", "votes": 3}
    gen = [{"proof": "weak", "token_ids": [1, 2], "logp_cond": -9.0},
           {"proof": "strong", "token_ids": [3], "logp_cond": -1.0}]
    rows = [Settled(f"{k:04d}", {"sample": k, "gen": g}, {"logp_uncond": -10.0}) for k, g in enumerate(gen)]
    records = aggregate_proofs(pair, rows, producer="prover", round_=2, selection="specificity")
    kinds = [k for k, _ in records]
    assert kinds == ["proofs", "proofs", "rationales"]
    rationale = records[-1][1]
    assert rationale["rationale"] == "strong" and rationale["votes"] == 3
    assert rationale["target"] == "<think>\nstrong\n</think>\n<answer>\nB\n</answer>"
    assert rationale["score"] == pytest.approx(-0.1) and rationale["round"] == 2
    assert [r["chosen"] for _, r in records[:2]] == [False, True]


def test_aggregate_proofs_rejects_a_pair_without_usable_proof():
    pair = {"id": "p1", "label": "A"}
    rows = [Settled("0000", {"sample": 0}, {"proof": "<answer>A</answer>", "token_ids": [1], "logp_cond": -1.0})]
    kind, record = aggregate_proofs(pair, rows, "prover", 1, "first")[-1]
    assert kind == "rejects" and record["reason"].startswith("no_usable_proof") and record["stage"] == "prove"
