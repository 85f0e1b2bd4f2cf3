"""Request helpers of the judging core: per-request seeds and why a pair row cannot be judged."""

from __future__ import annotations

from gram_ray.judging.requests import derive_seed, malformed, too_long

PAIR = {"id": "p1", "prompt": "q", "response_a": "a", "response_b": "b", "label": None}


def test_request_helpers():
    assert derive_seed(0, "p1", "ab", 3) == derive_seed(0, "p1", "ab", 3)
    assert len({derive_seed(0, "p1", "ab", k) for k in range(50)}) == 50
    assert derive_seed(1, "p1", "ab", 3) != derive_seed(0, "p1", "ab", 3)
    assert derive_seed(0, "p1", "ab", 0) != derive_seed(0, "p1", "ba", 0)
    assert 0 <= derive_seed(0, "x") < 2**31
    assert malformed(PAIR) is None
    assert malformed({**PAIR, "response_b": None}) == "malformed: response_b missing or empty"
    assert malformed({**PAIR, "id": ""}) == "malformed: missing id"
    assert malformed(PAIR, need_label=True).startswith("no_label")
    assert malformed({**PAIR, "label": "C"}, need_label=True).startswith("invalid_label")
    assert too_long(511, 512) is None
    assert too_long(512, 512) == "prompt_too_long: 512 tokens, max_model_len 512"
