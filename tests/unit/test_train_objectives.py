"""The losses, checked against formulas computed independently of the implementation."""

import math

import pytest
import torch

from gram_ray.train.objectives import completion_loss, label_loss, make_objective

ID_A, ID_B = 5, 9
VOCAB = 16


def _stage2_batch(lengths: list[int], labels: list[str], width: int) -> dict:
    """Right-padded rows whose last real token is the label; weight 1 on that token only."""
    ids = torch.randint(10, VOCAB, (len(lengths), width))
    weights = torch.zeros(len(lengths), width)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, (n, label) in enumerate(zip(lengths, labels, strict=True)):
        ids[row, n - 1] = ID_A if label == "A" else ID_B
        weights[row, n - 1] = 1.0
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "weights": weights}


def _bradley_terry(z_true: float, z_other: float, eps: float) -> float:
    """Paper eq. 8: -log sigmoid(Z_true - Z_other) + eps (Z_true - Z_other)."""
    d = z_true - z_other
    return -math.log(1 / (1 + math.exp(-d))) + eps * d


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.1, 0.15])
def test_stage2_loss_equals_bradley_terry_form_for_every_sample(eps):
    torch.manual_seed(0)
    lengths, labels = [7, 4, 9, 5, 6], ["A", "B", "B", "A", "B"]
    batch = _stage2_batch(lengths, labels, width=10)
    logits = torch.randn(len(lengths), 10, VOCAB) * 3
    expected = []
    for row, (n, label) in enumerate(zip(lengths, labels, strict=True)):
        z_a, z_b = logits[row, n - 2, ID_A].item(), logits[row, n - 2, ID_B].item()  # position before label
        expected.append(_bradley_terry(z_a, z_b, eps) if label == "A" else _bradley_terry(z_b, z_a, eps))
    loss, metrics = label_loss(logits, batch, (ID_A, ID_B), eps)
    assert loss.item() == pytest.approx(sum(expected) / len(expected), rel=1e-5)
    assert 0.0 <= metrics["accuracy"].item() <= 1.0


def test_stage2_loss_depends_on_every_sample_not_only_the_first():
    torch.manual_seed(1)
    lengths, labels = [5, 6, 4], ["A", "B", "A"]
    batch = _stage2_batch(lengths, labels, width=6)
    logits = torch.randn(3, 6, VOCAB)
    base = label_loss(logits, batch, (ID_A, ID_B), 0.1)[0].item()
    for row, n in enumerate(lengths):
        changed = logits.clone()
        changed[row, n - 2, ID_A] += 4.0  # move one sample's label logits only
        assert label_loss(changed, batch, (ID_A, ID_B), 0.1)[0].item() != pytest.approx(base), row


def test_stage2_loss_reads_the_position_before_the_label():
    """Right logits at p-1 (predicting the label), misleading ones at p (the label's own position)."""
    lengths, labels = [5, 3], ["B", "A"]
    batch = _stage2_batch(lengths, labels, width=5)
    logits = torch.zeros(2, 5, VOCAB)
    for row, (n, label) in enumerate(zip(lengths, labels, strict=True)):
        good, bad = (ID_A, ID_B) if label == "A" else (ID_B, ID_A)
        logits[row, n - 2, good] = 10.0  # before the label: confident and right
        logits[row, n - 1, bad] = 10.0  # at the label: confident and wrong (the off-by-one read)
    loss, metrics = label_loss(logits, batch, (ID_A, ID_B), 0.0)
    assert loss.item() < 1e-3
    assert metrics["accuracy"].item() == 1.0


def test_stage2_rejects_malformed_batches():
    batch = _stage2_batch([4, 4], ["A", "B"], width=4)
    logits = torch.randn(2, 4, VOCAB)
    two_labels = {**batch, "weights": batch["weights"].clone()}
    two_labels["weights"][0, 1] = 1.0
    with pytest.raises(ValueError, match="exactly one label token"):
        label_loss(logits, two_labels, (ID_A, ID_B), 0.1)
    wrong_token = {**batch, "input_ids": batch["input_ids"].clone()}
    wrong_token["input_ids"][1, 3] = 11
    with pytest.raises(ValueError, match="neither the A nor the B"):
        label_loss(logits, wrong_token, (ID_A, ID_B), 0.1)
    with pytest.raises(ValueError, match="label token ids"):
        make_objective("gram_stage2")


def test_completion_loss_is_mean_nll_of_weighted_tokens_only():
    torch.manual_seed(2)
    ids = torch.randint(0, VOCAB, (2, 6))
    weights = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 1, 10, 1, 0, 0]], dtype=torch.float32)  # row 1 padded
    batch = {"input_ids": ids, "attention_mask": (weights > 0).long(), "weights": weights}
    logits = torch.randn(2, 6, VOCAB)
    log_p = torch.log_softmax(logits, dim=-1)
    terms = []
    for row in range(2):
        for t in range(1, 6):
            if weights[row, t] > 0:
                terms.append(-weights[row, t].item() * log_p[row, t - 1, ids[row, t]].item())
    loss, _ = completion_loss(logits, batch)
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    masked = logits.clone()  # logits that predict prompt tokens, padding or nothing at all
    masked[0, :2] += torch.randn(2, VOCAB)
    masked[0, 5] += torch.randn(VOCAB)
    masked[1, 3:] += torch.randn(3, VOCAB)
    assert completion_loss(masked, batch)[0].item() == pytest.approx(loss.item(), rel=1e-6)
