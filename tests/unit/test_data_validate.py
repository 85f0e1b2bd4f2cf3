"""PairValidator rules on small Arrow tables: each bad row gets its reason, good rows pass cleaned."""

from __future__ import annotations

import pyarrow as pa
import pytest

from gram_ray.config import ValidationConfig
from gram_ray.data.schemas import pair_id
from gram_ray.data.validate import PairValidator, good_rows, reject_rows


def table(*rows: dict) -> pa.Table:
    base = {"id": None, "prompt": "p", "response_a": "x", "response_b": "y", "label": "A"}
    return pa.Table.from_pylist([{**base, "id": f"id{i}", **row} for i, row in enumerate(rows)])


def reasons(validator: PairValidator, t: pa.Table) -> list[str | None]:
    return validator(t)["reason"].to_pylist()


@pytest.mark.parametrize(("row", "reason"), [
    ({"prompt": None}, "missing_field:prompt"),
    ({"response_a": ""}, "empty_field:response_a"),
    ({"response_b": " \n\t"}, "empty_field:response_b"),
    ({"response_b": "\x07\x1b"}, "empty_field:response_b"),  # nothing left once control characters go
    ({"label": "A>B"}, "bad_label"),
    ({"label": ""}, "bad_label"),
    ({"label": "tie"}, "bad_label"),
    ({"response_b": " x "}, "identical_responses"),
    ({"id": None}, "missing_field:id"),
])
def test_each_rule(row, reason):
    assert reasons(PairValidator(), table({}, row)) == [None, reason]


@pytest.mark.parametrize(("raw", "normalised"), [("a", "A"), (" B ", "B"), ("b\n", "B"), (None, None)])
def test_label_spellings_are_normalised(raw, normalised):
    good, rejects = PairValidator().split(table({"label": raw}))
    assert rejects.num_rows == 0
    assert good["label"].to_pylist() == [normalised]


def test_require_label_rejects_unlabelled_rows():
    validator = PairValidator(ValidationConfig(require_label=True))
    assert reasons(validator, table({"label": None}, {})) == ["missing_label", None]


def test_non_string_columns_are_rejected_per_row():
    t = pa.table({"id": ["a", "b"], "prompt": [1, None], "response_a": ["x", "x"], "response_b": ["y", "y"],
                  "label": ["A", "B"]})
    good, rejects = PairValidator().split(t)
    assert good.num_rows == 0
    assert rejects["reason"].to_pylist() == ["not_string:prompt", "missing_field:prompt"]
    assert rejects["prompt"].to_pylist() == ["1", None]


def test_control_characters_are_stripped_and_counted():
    validator = PairValidator()
    good, _ = validator.split(table({"prompt": "5.1\x07ngle", "response_a": "who \x80\x94if\tany\r\n"}, {}))
    assert good["prompt"].to_pylist() == ["5.1ngle", "p"]
    assert good["response_a"].to_pylist() == ["who if\tany\r\n", "x"]
    assert good["id"].to_pylist() == [pair_id("5.1ngle", "who if\tany\r\n", "y"), "id1"]  # ids follow content
    assert validator.cleaned_rows == 1


def test_duplicates_keep_the_first_passing_row_across_batches():
    validator = PairValidator()
    first = reasons(validator, table({"id": "same", "label": "zz"}, {"id": "same"}, {"id": "same"}))
    second = reasons(validator, table({"id": "same"}, {"id": "new"}))
    assert first == ["bad_label", None, "duplicate_id"]
    assert second == ["duplicate_id", None]


def test_chars_over_four_estimate_the_token_budget():
    validator = PairValidator(ValidationConfig(max_tokens=10))
    # 40 characters = 10 estimated tokens (fits); 41 characters = ceil(10.25) = 11 (too long)
    rows = table({"prompt": "p" * 38, "response_a": "a", "response_b": "b"},
                 {"prompt": "p" * 39, "response_a": "a", "response_b": "b"})
    assert reasons(validator, rows) == [None, "too_long"]


def test_a_configured_tokenizer_counts_the_budget(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "one": 1, "two": 2}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]").save_pretrained(tmp_path)
    validator = PairValidator(ValidationConfig(max_tokens=4, tokenizer=str(tmp_path)))
    # one word = one token, however long: 4 tokens fit, 5 do not; chars/4 would say otherwise
    rows = table({"prompt": "one two", "response_a": "x", "response_b": "y"},
                 {"prompt": "one two one", "response_a": "x", "response_b": "y"},
                 {"prompt": "p" * 100, "response_a": "x", "response_b": "y"})
    assert reasons(validator, rows) == [None, "too_long", None]


def test_rejects_keep_original_values_as_strings_and_other_columns():
    t = table({"label": " zz ", "response_b": "y\x07"}).append_column("input_row", pa.array([12], pa.int64()))
    good, rejects = PairValidator(stage="round-1").split(t)
    assert good.num_rows == 0
    [row] = rejects.to_pylist()
    assert row == {"id": "id0", "prompt": "p", "response_a": "x", "response_b": "y\x07", "label": " zz ",
                   "input_row": "12", "reason": "bad_label", "stage": "round-1"}
    assert all(pa.types.is_string(f.type) for f in rejects.schema)


def test_good_and_reject_rows_partition_an_annotated_batch():
    annotated = PairValidator()(table({}, {"label": "?"}, {}))
    assert good_rows(annotated).column_names == ["id", "prompt", "response_a", "response_b", "label"]
    assert good_rows(annotated).num_rows + reject_rows(annotated).num_rows == 3


def test_a_table_without_pair_columns_is_an_error():
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['response_b'\]"):
        PairValidator()(pa.table({"id": ["a"], "prompt": ["p"], "response_a": ["x"], "label": ["A"]}))
