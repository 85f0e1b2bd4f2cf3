"""Every completion of an n > 1 request, through the engine row's ``COMPLETIONS`` column and back."""

from __future__ import annotations

from vllm.logprobs import Logprob
from vllm.outputs import CompletionOutput

from gram_ray.judging.completions import COMPLETIONS, Completion, decode, encode
from gram_ray.judging.engine import completions_of


def output(index: int, text: str, token_ids: list[int], logprobs: list[dict[int, float]]) -> CompletionOutput:
    return CompletionOutput(index, text, token_ids, None,
                            [{t: Logprob(lp, rank=1) for t, lp in pos.items()} for pos in logprobs])


def test_all_completions_round_trip_in_order():
    outputs = [output(0, "<answer>A</answer>", [5, 10], [{5: -0.1}, {10: -0.2, 20: -1.5}]),
               output(1, "<answer>B</answer>", [5, 20], [{5: -0.3}, {10: -2.0, 20: -0.4}])]
    assert decode(encode(outputs)) == [Completion("<answer>A</answer>", [5, 10], [{5: -0.1}, {10: -0.2, 20: -1.5}]),
                                       Completion("<answer>B</answer>", [5, 20], [{5: -0.3}, {10: -2.0, 20: -0.4}])]
    no_logprobs = CompletionOutput(0, "x", [7], None, None)
    assert decode(encode([no_logprobs, no_logprobs])) == [Completion("x", [7], [])] * 2


def test_a_single_completion_is_left_to_the_row_columns():
    assert encode([output(0, "x", [7], [{7: -0.5}])]) == ""
    row = {"generated_text": "x", "generated_tokens": [7], COMPLETIONS: "",
           "logprobs": [{"7": {"logprob": -0.5, "rank": 1, "decoded_token": "x"}, "9": None}]}  # Arrow's struct form
    assert completions_of(row) == [Completion("x", [7], [{7: -0.5}])]


def test_the_completions_column_wins_over_the_first_completion_columns():
    outputs = [output(0, "a", [1], [{1: -0.1}]), output(1, "b", [2], [{2: -0.2}])]
    row = {"generated_text": "a", "generated_tokens": [1], "logprobs": [{"1": {"logprob": -0.1}}],
           COMPLETIONS: encode(outputs)}
    assert [c.text for c in completions_of(row)] == ["a", "b"]
