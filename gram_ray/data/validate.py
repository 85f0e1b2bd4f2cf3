"""Row checks for pair tables, vectorised over Arrow, usable on one table or as a Ray Data `map_batches` UDF.

Rules (the first that fails names the row's `reason`):

* ``missing_field:<f>`` / ``not_string:<f>`` / ``empty_field:<f>``: id, prompt, response_a, response_b
  (and rationale, target when present) must be non-null strings that are not empty or whitespace only.
* Control characters (C0 except tab, newline and carriage return; DEL; C1) are **stripped**, not
  rejected: real benchmark text carries stray ones (a ``\\a`` from LaTeX ``\\angle``, mojibake C1 bytes),
  and dropping such rows would bias a benchmark. The number of cleaned rows is reported, and a cleaned
  row's id is recomputed from its clean text (ids are content hashes).
  Text that is not valid UTF-8 is rejected earlier, when the record is read (``invalid_utf8``).
* ``bad_label`` / ``not_string:label``: labels are "A", "B" or null. Case and surrounding whitespace are
  forgiven (" b " -> "B"); anything else ("A>B", "tie", "") is rejected, never guessed.
  ``missing_label``: a null label when ``ValidationConfig.require_label`` is set.
* ``identical_responses``: the two responses are equal after trimming surrounding whitespace.
* ``too_long``: prompt + both responses exceed ``ValidationConfig.max_tokens``, counted by the configured
  tokenizer, else estimated as characters / 4 (ceiling).
* ``duplicate_id``: an id already seen among passing rows; the first passing occurrence is kept.

Rejected rows keep their original values (as strings) and gain `reason` and `stage` columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from gram_ray.config import ValidationConfig
from gram_ray.data.records import to_json
from gram_ray.data.schemas import pair_id

if TYPE_CHECKING:
    import ray.data

REQUIRED_TEXT = ("id", "prompt", "response_a", "response_b")
OPTIONAL_TEXT = ("rationale", "target")
BUDGET_TEXT = ("prompt", "response_a", "response_b")
LABELS = ["A", "B"]
CHARS_PER_TOKEN = 4
CONTROL_CHARS = r"[\x{0}-\x{8}\x{b}\x{c}\x{e}-\x{1f}\x{7f}-\x{9f}]"
REASON, STAGE = "reason", "stage"


class PairValidator:
    """Annotates a batch with `reason` (null = passes) and `stage`; text is cleaned and labels normalised
    in passing rows. Duplicate ids are tracked across the batches one instance sees, so on Ray Data
    (`validate_dataset`) a single actor makes the check global."""

    def __init__(self, cfg: ValidationConfig | None = None, stage: str = "validate"):
        self.cfg = cfg or ValidationConfig()
        self.stage = stage
        self.cleaned_rows = 0  # passing rows whose text had control characters stripped
        self._seen: set[str] = set()
        self._tokenizer = None
        if self.cfg.tokenizer and self.cfg.max_tokens:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.cfg.tokenizer)

    def __call__(self, batch: pa.Table) -> pa.Table:
        missing = [name for name in (*REQUIRED_TEXT, "label") if name not in batch.column_names]
        if missing:
            raise ValueError(f"pair table lacks column(s) {missing}; has {batch.column_names}")
        reason = pa.nulls(batch.num_rows, pa.string())
        originals: dict[str, pa.Array] = {}
        cleaned: dict[str, pa.Array] = {}
        for name in (*REQUIRED_TEXT, *(n for n in OPTIONAL_TEXT if n in batch.column_names)):
            column = _array(batch[name])
            originals[name] = _as_strings(column)
            reason = _flag(reason, pc.is_null(column), f"missing_field:{name}")
            if not _is_string(column.type):
                reason = _flag(reason, pc.is_valid(column), f"not_string:{name}")
                cleaned[name] = originals[name]
                continue
            cleaned[name] = pc.replace_substring_regex(column, CONTROL_CHARS, "")
            reason = _flag(reason, pc.equal(pc.utf8_trim_whitespace(cleaned[name]), ""), f"empty_field:{name}")

        label = _array(batch["label"])
        originals["label"] = _as_strings(label)
        if _is_string(label.type):
            cleaned["label"] = pc.utf8_upper(pc.utf8_trim_whitespace(label))
            unknown = pc.and_(pc.is_valid(label), pc.invert(pc.is_in(cleaned["label"], pa.array(LABELS))))
            reason = _flag(reason, unknown, "bad_label")
        else:
            cleaned["label"] = originals["label"]
            reason = _flag(reason, pc.is_valid(label), "not_string:label")
        if self.cfg.require_label:
            reason = _flag(reason, pc.is_null(label), "missing_label")

        a, b = (pc.utf8_trim_whitespace(cleaned[n]) for n in ("response_a", "response_b"))
        reason = _flag(reason, pc.equal(a, b), "identical_responses")
        if self.cfg.max_tokens:
            reason = _flag(reason, pc.greater(self._token_counts(cleaned), self.cfg.max_tokens), "too_long")
        cleaned["id"] = _rehash_changed(cleaned, _changed(cleaned, originals, BUDGET_TEXT))
        reason = self._flag_duplicates(reason, cleaned["id"])

        passes = pc.is_null(reason)
        any_changed = _changed(cleaned, originals, [n for n in cleaned if n not in ("id", "label")])
        self.cleaned_rows += pc.sum(pc.and_(passes, any_changed)).as_py() or 0

        out = batch
        for name in cleaned:
            value = pc.if_else(passes, cleaned[name], originals[name])
            out = out.set_column(out.column_names.index(name), name, value)
        stage = pc.if_else(passes, pa.scalar(None, pa.string()), pa.scalar(self.stage))
        return out.append_column(REASON, reason).append_column(STAGE, stage)

    def split(self, table: pa.Table) -> tuple[pa.Table, pa.Table]:
        """(passing rows without the annotation columns, rejected rows as strings with reason and stage)."""
        annotated = self(table)
        return good_rows(annotated), reject_rows(annotated)

    def _token_counts(self, texts: dict[str, pa.Array]) -> pa.Array:
        if self._tokenizer is None:
            chars = [pc.fill_null(pc.utf8_length(texts[n]), 0) for n in BUDGET_TEXT]
            total = pc.add(pc.add(chars[0], chars[1]), chars[2])
            return pc.ceil(pc.divide(pc.cast(total, pa.float64()), CHARS_PER_TOKEN))
        counts = [0] * len(texts["prompt"])
        for name in BUDGET_TEXT:
            values = [v or "" for v in texts[name].to_pylist()]
            ids = self._tokenizer(values, add_special_tokens=False)["input_ids"]
            counts = [c + len(t) for c, t in zip(counts, ids, strict=True)]
        return pa.array(counts, pa.int64())

    def _flag_duplicates(self, reason: pa.Array, ids: pa.Array) -> pa.Array:
        duplicate = []
        for pid, ok in zip(ids.to_pylist(), pc.is_null(reason).to_pylist(), strict=True):
            duplicate.append(ok and pid in self._seen)
            if ok:
                self._seen.add(pid)
        return _flag(reason, pa.array(duplicate, pa.bool_()), "duplicate_id")


def validate_dataset(ds: ray.data.Dataset, cfg: ValidationConfig | None = None,
                     stage: str = "validate") -> ray.data.Dataset:
    """The annotated dataset: one validator actor, so duplicates are caught across all blocks (the checks
    are vectorised; one actor keeps up with reading). Materialize it, then split with
    ``.map_batches(good_rows, batch_format="pyarrow")`` and ``.map_batches(reject_rows, ...)``."""
    from ray.data import ActorPoolStrategy

    return ds.map_batches(PairValidator, fn_constructor_args=(cfg, stage), batch_format="pyarrow",
                          compute=ActorPoolStrategy(size=1))


def good_rows(batch: pa.Table) -> pa.Table:
    """Passing rows of an annotated batch, annotation columns dropped (a `map_batches` function)."""
    return batch.filter(pc.is_null(batch[REASON])).drop_columns([REASON, STAGE])


def reject_rows(batch: pa.Table) -> pa.Table:
    """Rejected rows of an annotated batch, every column as a string (a `map_batches` function)."""
    rejected = batch.filter(pc.is_valid(batch[REASON]))
    return pa.table({name: _as_strings(_array(rejected[name])) for name in rejected.column_names})


def _changed(cleaned: dict[str, pa.Array], originals: dict[str, pa.Array], names) -> pa.Array:
    """Rows where cleaning altered any of `names`."""
    masks = [pc.fill_null(pc.not_equal(cleaned[n], originals[n]), False) for n in names]
    out = masks[0]
    for mask in masks[1:]:
        out = pc.or_(out, mask)
    return out


def _rehash_changed(cleaned: dict[str, pa.Array], changed: pa.Array) -> pa.Array:
    """Ids are content hashes (`pair_id`), so rows whose pair text was cleaned get the id of the clean text."""
    rows = pc.indices_nonzero(changed).to_pylist()
    if not rows:
        return cleaned["id"]
    ids = cleaned["id"].to_pylist()
    prompt, a, b = (cleaned[n].to_pylist() for n in BUDGET_TEXT)
    for i in rows:
        ids[i] = pair_id(prompt[i], a[i], b[i])
    return pa.array(ids, pa.string())


def _flag(reason: pa.Array, mask: pa.Array, code: str) -> pa.Array:
    """Set `code` where `mask` holds and no earlier rule has already rejected the row."""
    hit = pc.and_(pc.is_null(reason), pc.fill_null(mask, False))
    return pc.if_else(hit, pa.scalar(code), reason)


def _array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return array.cast(pa.string()) if pa.types.is_large_string(array.type) else array


def _is_string(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _as_strings(column: pa.Array) -> pa.Array:
    if _is_string(column.type):
        return column.cast(pa.string())
    if pa.types.is_null(column.type) or pa.types.is_primitive(column.type):
        return column.cast(pa.string())
    return pa.array([None if v is None else to_json(v) for v in column.to_pylist()], pa.string())
