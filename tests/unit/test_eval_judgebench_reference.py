"""The authors' own judge outputs must score exactly their official Overall numbers (SOURCES.md)."""

from __future__ import annotations

import pytest

from gram_ray.eval.judgebench_outputs import score_judge_outputs

# Overall accuracy per reference file, from SOURCES.md (official utils/metrics.py, two games per pair).
OFFICIAL_OVERALL = {
    "response_model=gpt-4o-2024-05-13,judge_name=reward_model,judge_model=Skywork_Skywork-Reward-Gemma-2-27B": 64.29,
    "response_model=gpt-4o-2024-05-13,judge_name=reward_model,judge_model=Skywork_Skywork-Reward-Llama-3.1-8B": 62.29,
    "response_model=gpt-4o-2024-05-13,judge_name=reward_model,judge_model=internlm_internlm2-20b-reward": 63.43,
    "response_model=gpt-4o-2024-05-13,judge_name=reward_model,judge_model=internlm_internlm2-7b-reward": 59.43,
    "response_model=gpt-4o-2024-05-13,judge_name=reward_model,judge_model=Ray2333_GRM-Gemma-2B-rewardmodel-ft": 59.43,
    "response_model=gpt-4o-2024-05-13,judge_name=arena_hard,judge_model=o1-mini-2024-09-12": 65.71,
    "response_model=claude-3-5-sonnet-20240620,judge_name=arena_hard,judge_model=claude-3-haiku-20240307": 32.22,
}


@pytest.mark.parametrize("stem", sorted(OFFICIAL_OVERALL))
def test_reference_outputs_reproduce_official_overall(benchmarks_dir, stem):
    path = benchmarks_dir / "judgebench" / "reference_outputs" / f"dataset=judgebench,{stem}.jsonl"
    score = score_judge_outputs(path)
    assert round(score.overall, 2) == OFFICIAL_OVERALL[stem]
    assert sum(score.counts.values()) == (270 if "claude-3-5-sonnet" in stem else 350)
    assert set(score.groups) == {"mmlu-pro", "livebench-reasoning", "livebench-math", "livecodebench"}


def test_cli_scores_a_reference_file(benchmarks_dir, capsys, tmp_path):
    from gram_ray.cli import main

    stem = "response_model=gpt-4o-2024-05-13,judge_name=arena_hard,judge_model=o1-mini-2024-09-12"
    path = benchmarks_dir / "judgebench" / "reference_outputs" / f"dataset=judgebench,{stem}.jsonl"
    assert main(["eval", "score", "--benchmark", "judgebench", str(path), "--out", str(tmp_path)]) == 0
    assert "| **Overall** | **65.71** | 350 |" in capsys.readouterr().out
    assert (tmp_path / "scores.json").is_file()
    assert main(["eval", "score", "--benchmark", "rm_bench", str(path)]) == 2  # a JSONL only for JudgeBench
    assert "results Parquet" in capsys.readouterr().err
