"""Judges, ranking, voting@k, rewards and the eval harness on the tiny model in real vLLM (offline engine).

The tiny judge is random-init, so these tests check mechanics and agreement, not accuracy: probabilities
are the restricted softmax transformers computes, every ranking method agrees with the judge's own
pairwise matrix on a case where that matrix is a clear total order, and the call patterns are the
promised ones (ceil(log2 n) knockout rounds, one n = k request for voting@k).
"""

from __future__ import annotations

import itertools
import math

import pyarrow.parquet as pq
import pytest
import torch

from gram_ray.apply.judges import OfflineJudge
from gram_ray.apply.rank_file import rank_rows
from gram_ray.apply.ranking import RankTask, best_of_n, knockout, rank
from gram_ray.apply.reward import greedy_references, rewards
from gram_ray.config import EngineConfig, JudgeConfig
from gram_ray.eval.harness import PAIRS, judge_benchmark, load_eval_pairs, run_eval, score_results
from gram_ray.eval.heldout import evaluate_heldout
from gram_ray.prompts.verdicts import eq3

pytestmark = pytest.mark.integration

PROMPT = "What is 23+45?"
POOL = ["68", "67", "69", "58", "78", "86", "66", "70"]


@pytest.fixture(scope="module")
def label_judge(vllm_tiny_llm):
    return OfflineJudge(vllm_tiny_llm, "label", JudgeConfig(template="compact"))


@pytest.fixture(scope="module")
def hf_model(tiny_kit):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_kit.model_dir, dtype=torch.float32).eval()


def _restricted_p_a(model, ids, labels) -> float:
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1].float()
    mass = torch.softmax(logits[labels.ids], dim=0)
    return mass[: len(labels.a)].sum().item()


def test_label_probability_is_the_restricted_softmax(label_judge, hf_model):
    items = [(PROMPT, "68", "67"), (PROMPT, "67", "68"), ("What is 10+11?", "21", "12")]
    probs = label_judge(items)
    for item, p in zip(items, probs, strict=True):
        assert p == pytest.approx(_restricted_p_a(hf_model, label_judge.core.prompt_ids(item), label_judge.core.labels),
                                  abs=1e-4)


def test_reasoning_probability_is_read_at_the_answer_token(vllm_tiny_llm, hf_model):
    from vllm import TokensPrompt
    from vllm.sampling_params import SamplingParams, StructuredOutputsParams

    judge = OfflineJudge(vllm_tiny_llm, "reasoning", JudgeConfig(template="compact"))
    ids = judge.core.prompt_ids((PROMPT, "68", "67"))
    # A random model writes no <answer>; a regex makes it write one. The grammar masks every token it does
    # not allow, so it must allow all four label spellings at the answer for their ratio to be the model's.
    params = SamplingParams(**judge.core.sampling(), structured_outputs=StructuredOutputsParams(
        regex=r"<think>[a-z ]{1,8}</think><answer>\n ?[AB]\n</answer>"))
    (out,) = vllm_tiny_llm.generate([TokensPrompt(prompt_token_ids=ids)], params, use_tqdm=False)
    judgement = judge.core.read(out)
    generated = list(out.outputs[0].token_ids)
    position = max(i for i, t in enumerate(generated) if judge.core.labels.label_of(t) == judgement.answer)
    assert judgement.answer in ("A", "B") and judgement.votes_a + judgement.votes_b == 1
    expected = _restricted_p_a(hf_model, ids + generated[:position], judge.core.labels)
    assert judgement.p_a == pytest.approx(expected, abs=1e-4)


def test_voting_at_k_is_one_request_with_n_k(vllm_tiny_llm):
    judge = OfflineJudge(vllm_tiny_llm, "reasoning", JudgeConfig(template="compact", votes=4, temperature=1.0,
                                                                  max_tokens=16))
    (j,) = judge.judge([(PROMPT, "68", "67")])
    assert (judge.calls, judge.requests) == (1, 1)
    assert len(j.texts) == 4 and j.votes_a + j.votes_b + j.votes_none == 4
    (j8,) = judge.judge([(PROMPT, "68", "67")], votes=8)
    assert len(j8.texts) == 8 and judge.requests == 2


def _clear_case(label_judge):
    """From the judge's full pairwise matrix over POOL, 4 responses it orders transitively, and a reference
    against which eq. 3 rewards give that same order: the case every method must agree on."""
    pairs = list(itertools.permutations(range(len(POOL)), 2))
    p = dict(zip(pairs, label_judge([(PROMPT, POOL[i], POOL[j]) for i, j in pairs]), strict=True))
    beats = {(i, j): eq3(p[i, j], p[j, i]) for i, j in pairs}
    for subset in itertools.combinations(range(len(POOL)), 4):
        order = sorted(subset, key=lambda i: -sum(beats[i, j] > 0.5 for j in subset if j != i))
        if not all(beats[a, b] > 0.5 for a, b in itertools.combinations(order, 2)):
            continue
        for ref in set(range(len(POOL))) - set(subset):
            by_reward = sorted(subset, key=lambda i: -beats[i, ref])
            if by_reward == order:
                return [POOL[i] for i in subset], POOL[ref], [subset.index(i) for i in order]
    pytest.fail("no transitive 4-subset with an agreeing reference in the pool")


def test_ranking_methods_agree_on_a_clear_case(label_judge):
    responses, reference, expected = _clear_case(label_judge)
    task = RankTask(PROMPT, responses, reference)
    assert rank(label_judge, [task], "reference") == [expected]
    assert rank(label_judge, [task], "scan") == [expected]
    assert rank(label_judge, [task], "knockout")[0][0] == expected[0]
    for method in ("reference", "knockout", "scan"):
        assert best_of_n(label_judge, [task], method) == [expected[0]]


def test_knockout_rounds_are_batched_judge_calls(label_judge):
    tasks = [RankTask(PROMPT, POOL[:5]), RankTask("What is 10+11?", ["21", "12", "22"])]
    before = label_judge.calls
    results = knockout(label_judge, tasks)
    assert label_judge.calls - before == math.ceil(math.log2(5)) == 3
    assert [r.rounds for r in results] == [3, 2]


def test_rewards_against_greedy_reference(vllm_tiny_llm, label_judge):
    prompts = [PROMPT, "What is 10+11?"]
    refs = greedy_references(vllm_tiny_llm, prompts, max_tokens=6)
    assert len(refs) == 2 and all(isinstance(r, str) and r for r in refs)
    got = rewards(label_judge, prompts, ["68", "21"], refs)
    assert all(0.0 <= r <= 1.0 for r in got)
    assert rewards(label_judge, prompts, refs, refs) == pytest.approx([0.5, 0.5])  # eq. 3 of a tie


def test_rank_rows_ranks_and_rejects(label_judge):
    rows = [{"id": "q1", "prompt": PROMPT, "responses": POOL[:3], "reference": "68"},
            {"prompt": PROMPT, "responses": []},
            {"prompt": PROMPT, "responses": ["68", "67"]}]
    ranked, rejects = rank_rows(label_judge, rows, "reference")
    assert ranked.column("id").to_pylist() == ["q1"]
    assert rejects.column("reason").to_pylist() == ["responses_not_a_nonempty_list_of_strings", "reference_missing"]
    (row,) = ranked.to_pylist()
    assert sorted(row["order"]) == [0, 1, 2] and row["best"] == row["order"][0]
    assert row["rewards"][row["best"]] == max(row["rewards"])


def test_eval_run_on_real_benchmark_pairs(label_judge, benchmarks_dir, tmp_path):
    pairs = load_eval_pairs("hhh", benchmarks_dir)
    size = [len(r["prompt"]) + len(r["response_a"]) + len(r["response_b"]) for r in pairs.to_pylist()]
    pairs = pairs.take(sorted(range(len(size)), key=size.__getitem__)[:6])  # the tiny model's context is short
    calls = label_judge.calls
    score, paths = run_eval(label_judge, "hhh", pairs, tmp_path)
    assert label_judge.calls == calls + 1  # both games of all pairs in one call
    results = pq.read_table(paths["results"]).to_pylist()
    first = pairs.to_pylist()[0]
    p1, p2 = label_judge([(first["prompt"], first["response_a"], first["response_b"]),
                          (first["prompt"], first["response_b"], first["response_a"])])
    assert results[0]["preference_a"] == pytest.approx(eq3(p1, p2), abs=1e-6)
    assert score_results(pq.read_table(paths["results"])).overall == score.overall
    assert sum(score.counts.values()) == 6


@pytest.mark.parametrize("kind", ["label", "reasoning"])
def test_heldout_evaluation_in_a_ray_task_matches_the_in_process_judge(ray_local, tiny_kit, vllm_tiny_llm, kind,
                                                                       tmp_path):
    engine = EngineConfig(model=str(tiny_kit.model_dir), max_model_len=512, cpu_worker_in_engine_process=True)
    judge = JudgeConfig(template="compact", votes=1, temperature=0.0, max_tokens=24)
    pairs = pq.read_table(tiny_kit.heldout)
    outputs, info = evaluate_heldout(str(tiny_kit.heldout), tmp_path, engine, judge, kind)
    got = pq.read_table(outputs["judgements"]).to_pylist()
    expected = judge_benchmark(OfflineJudge(vllm_tiny_llm, kind, judge), PAIRS, pairs, single_game=kind == "reasoning")
    assert [r["id"] for r in got] == pairs.column("id").to_pylist()
    for mine, theirs in zip(got, expected.to_pylist(), strict=True):
        assert mine["decision_1"] == theirs["decision_1"] and mine["rationale_1"] == theirs["rationale_1"]
        assert mine["preference_a"] == pytest.approx(theirs["preference_a"], abs=1e-4)
        assert (mine["p_a_2"] is None) == (kind == "reasoning")
    assert info["pairs"] == pairs.num_rows and info["correct"] == sum(r["correct"] for r in got)
    assert info["accuracy"] == info["correct"] / pairs.num_rows


def test_heldout_evaluation_refuses_unlabelled_pairs(tiny_kit, tmp_path):
    engine = EngineConfig(model=str(tiny_kit.model_dir))
    with pytest.raises(ValueError, match="lack an A/B label"):
        evaluate_heldout(str(tiny_kit.unlabeled[0]), tmp_path, engine, JudgeConfig(template="compact"))
