"""Rows -> examples, per objective and role, and the reasons bad rows are rejected."""

import pytest

from gram_ray.prompts import judge_prompt, prover_prompt
from gram_ray.train.examples import PAIR_SEPARATOR, Example, row_examples

PAIR = {"id": "x", "prompt": "What is 2+2?", "response_a": "4", "response_b": "5", "label": "A"}
RATIONALE = {**PAIR, "rationale": "2+2=4. A: 4 yes. B: 5 no.", "target": "<think>\nx\n</think>\n<answer>\nA\n</answer>"}


def test_sft_roles_read_their_columns():
    judge = row_examples(RATIONALE, "sft", "judge", "compact", swap_augment=True)
    assert judge == [Example(judge_prompt("compact", "What is 2+2?", "4", "5"), RATIONALE["target"])]
    prover = row_examples(RATIONALE, "sft", "prover", "compact", swap_augment=True)
    assert prover == [Example(prover_prompt("compact", "What is 2+2?", "4", "5", "A"), RATIONALE["rationale"])]
    plain = row_examples({"prompt": "q", "completion": "c"}, "sft", "plain", "compact", swap_augment=True)
    assert plain == [Example("q", "c")]


def test_stage1_trains_both_orders_of_an_unlabeled_pair():
    row = {**PAIR, "label": None}
    both = row_examples(row, "gram_stage1", "judge", "gram", swap_augment=True)
    question = PAIR["prompt"]
    assert both == [Example(question, "4" + PAIR_SEPARATOR + "5"), Example(question, "5" + PAIR_SEPARATOR + "4")]
    assert row_examples(row, "gram_stage1", "judge", "gram", swap_augment=False) == both[:1]


def test_stage2_completion_is_the_label_after_the_gram_prompt():
    (example,) = row_examples({**PAIR, "label": "B"}, "gram_stage2", "judge", "gram", swap_augment=True)
    assert example.prompt.endswith("# Preferred:") and example.completion == "B"


@pytest.mark.parametrize(
    ("row", "objective", "role", "reason"),
    [
        ({**PAIR, "label": None}, "gram_stage2", "judge", "label must be one of"),
        ({**PAIR, "label": None, "rationale": "r"}, "sft", "prover", "label must be one of"),
        (PAIR, "sft", "judge", "missing column 'target'"),
        ({**RATIONALE, "target": "  "}, "sft", "judge", "empty 'target'"),
        ({"prompt": "q"}, "sft", "plain", "missing column 'completion'"),
        ({**PAIR, "response_b": None}, "gram_stage1", "judge", "empty 'response_b'"),
    ],
)
def test_rows_that_cannot_train_say_why(row, objective, role, reason):
    with pytest.raises(ValueError) as err:
        row_examples(row, objective, role, "gram", swap_augment=True)
    assert reason in str(err.value)
