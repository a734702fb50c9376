"""The weighted Huber loss against hand computations (kills the mutants of training/loss.py
that the trainer's end-to-end tests, outside the mutation run, would leave)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from training.loss import weighted_huber  # noqa: E402

PREDICTION = [1.0, 3.0, 2.0, 0.0]
TARGET = [1.5, 1.0, 2.0, 0.25]


def _huber(error: float, delta: float) -> float:
    """Huber by hand: quadratic within delta, linear beyond."""
    a = abs(error)
    return 0.5 * a * a if a <= delta else delta * (a - 0.5 * delta)


def _loss(weight, *, delta=1.0, renormalise=False, requires_grad=False):
    prediction = torch.tensor(PREDICTION, dtype=torch.float64, requires_grad=requires_grad)
    target = torch.tensor(TARGET, dtype=torch.float64)
    w = torch.tensor(weight, dtype=torch.float64)
    loss, per_item = weighted_huber(prediction, target, w, delta=delta, renormalise=renormalise)
    return prediction, loss, per_item


@pytest.mark.parametrize("delta", [1.0, 0.5, 3.0])
def test_per_item_huber_and_the_batch_mean_match_a_hand_computation(delta):
    weight = [2.0, 1.0, 3.0, 0.5]
    _, loss, per_item = _loss(weight, delta=delta)
    expected = [_huber(p - t, delta) for p, t in zip(PREDICTION, TARGET, strict=True)]
    assert per_item.tolist() == pytest.approx(expected)
    # the paper's mean over the batch: weights are not rescaled
    mean = sum(w * h for w, h in zip(weight, expected, strict=True)) / len(weight)
    assert loss.item() == pytest.approx(mean)


def test_the_defaults_are_delta_one_and_the_plain_batch_mean():
    prediction = torch.tensor(PREDICTION, dtype=torch.float64)
    target = torch.tensor(TARGET, dtype=torch.float64)
    weight = torch.tensor([2.0, 1.0, 3.0, 4.0], dtype=torch.float64)
    loss, per_item = weighted_huber(prediction, target, weight)
    assert per_item.tolist() == pytest.approx([0.125, 1.5, 0.0, 0.03125])
    # the mean over the batch (sum / 4), not the weighted mean (sum / 10)
    assert loss.item() == pytest.approx((2 * 0.125 + 1.5 + 4 * 0.03125) / 4)


@pytest.mark.parametrize("weight", [[2.0, 1.0, 3.0, 0.5], [0.1, 0.2, 0.05, 0.15]])
def test_renormalised_loss_is_the_weighted_mean(weight):
    # the second weights sum to 0.5: below 1 they still divide, they are not taken as zero
    _, loss, per_item = _loss(weight, renormalise=True)
    expected = sum(w * h for w, h in zip(weight, per_item.tolist(), strict=True)) / sum(weight)
    assert loss.item() == pytest.approx(expected)
    # rescaling every weight leaves a weighted mean unchanged
    _, scaled, _ = _loss([10 * w for w in weight], renormalise=True)
    assert scaled.item() == pytest.approx(expected)


def test_a_batch_of_zero_weights_gives_zero_and_a_zero_gradient():
    for renormalise in (False, True):
        prediction, loss, _ = _loss([0.0, 0.0, 0.0, 0.0], renormalise=renormalise,
                                    requires_grad=True)
        assert loss.item() == 0.0  # not NaN from 0 / 0
        loss.backward()
        assert prediction.grad.tolist() == [0.0, 0.0, 0.0, 0.0]


def test_an_item_of_weight_zero_contributes_nothing_to_the_gradient():
    prediction, loss, per_item = _loss([1.0, 0.0, 2.0, 1.0], requires_grad=True)
    loss.backward()
    assert prediction.grad[1].item() == 0.0
    assert prediction.grad[0].item() == pytest.approx(1.0 * (1.0 - 1.5) / 4)
    # the per-item losses are for reporting: outside the graph
    assert not per_item.requires_grad


# --- CLCE's parts (training/loss.py since CLCE) -------------------------------------------

LOGITS = [[2.0, 0.5, -1.0], [0.0, 1.0, 0.3], [1.5, -0.5, 0.2], [0.1, 0.2, 0.3]]
BINS = [0, 1, 2, 2]


def _cross_entropy(weight, **kwargs):
    from training.loss import weighted_cross_entropy

    logits = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    loss = weighted_cross_entropy(logits, torch.tensor(BINS), torch.tensor(weight,
                                  dtype=torch.float64), **kwargs)
    return logits, loss


def _hand_cross_entropy() -> list[float]:
    import math

    return [math.log(sum(math.exp(v) for v in row)) - row[b] for row, b in zip(LOGITS, BINS,
                                                                               strict=True)]


def test_the_cross_entropy_term_is_the_weighted_batch_mean_by_default():
    weight = [0.4, 0.2, 0.0, 0.1]  # below 1 and summing below 1: they are not taken as 0 or 1
    ce = _hand_cross_entropy()
    weighted = sum(w * c for w, c in zip(weight, ce, strict=True))
    _, default = _cross_entropy(weight)
    assert default.item() == pytest.approx(weighted / 4)  # the batch mean, like the Huber's
    _, renormalised = _cross_entropy(weight, renormalise=True)
    assert renormalised.item() == pytest.approx(weighted / sum(weight))


def test_a_cross_entropy_batch_of_zero_weights_gives_zero_and_a_zero_gradient():
    for renormalise in (False, True):
        logits, loss = _cross_entropy([0.0, 0.0, 0.0, 0.0], renormalise=renormalise)
        assert loss.item() == 0.0  # not NaN from 0 / 0
        loss.backward()
        assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_an_item_of_weight_zero_with_an_infinite_cross_entropy_adds_nothing():
    from training.loss import weighted_cross_entropy

    # item 1's own bin has logit -inf: its cross-entropy is inf, and 0 x inf would be NaN
    logits = torch.tensor([[2.0, 0.5], [-math.inf, 0.0]], dtype=torch.float64)
    loss = weighted_cross_entropy(logits, torch.tensor([0, 0]),
                                  torch.tensor([1.0, 0.0], dtype=torch.float64))
    expected = (math.log(math.exp(2.0) + math.exp(0.5)) - 2.0) / 2
    assert loss.item() == pytest.approx(expected)


def test_the_contrastive_term_is_not_renormalised_by_default():
    from training.loss import contrastive_term

    embedding = torch.tensor([[1.0, 0.2], [0.9, 0.1], [-0.3, 1.0], [-0.2, 0.8]],
                             dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    weight = torch.tensor([3.0, 0.5, 1.0, 0.25], dtype=torch.float64)
    terms = {flag: contrastive_term(embedding, labels, weight, tau=0.5, hardness=1.0,
                                    renormalise=flag).item() for flag in (False, True)}
    assert terms[False] != pytest.approx(terms[True])
    default = contrastive_term(embedding, labels, weight, tau=0.5, hardness=1.0)
    assert default.item() == terms[False]


def test_hardness_weights_beside_an_anchor_without_negatives():
    from training.loss import hardness_weights

    similarity = torch.tensor([[0.0, 0.4, 0.2], [0.7, 0.0, -0.3], [0.5, 0.1, 0.0]],
                              dtype=torch.float64)
    # row 0 has no negatives; row 1's negatives are 0 and 2, row 2's is 1
    negatives = torch.tensor([[False, False, False], [True, False, True],
                              [False, True, False]])
    h = hardness_weights(similarity, negatives, 2.0)
    soft = [math.exp(2.0 * 0.7), math.exp(2.0 * -0.3)]
    assert h[0].tolist() == [0.0, 0.0, 0.0]
    assert h[1].tolist() == pytest.approx([2 * soft[0] / sum(soft), 0.0, 2 * soft[1] / sum(soft)])
    assert h[2].tolist() == [0.0, 1.0, 0.0]


def test_when_the_used_items_share_one_label_no_item_is_an_anchor():
    """An item of weight 0 is no negative: items 0-2 (label 0) have no used item of another
    label, and item 3 (label 1, weight 0) has no used positive, so the term is 0 with a zero,
    finite gradient (a row without negatives must not reach a log-sum-exp of only -inf)."""
    from training.loss import contrastive_term

    embedding = torch.tensor([[1.0, 0.2], [0.9, 0.1], [-0.3, 1.0], [-0.2, 0.8]],
                             dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1])
    weight = torch.tensor([1.0, 2.0, 1.0, 0.0], dtype=torch.float64)
    for renormalise in (False, True):
        embedding.grad = None
        term = contrastive_term(embedding, labels, weight, tau=0.5, hardness=1.0,
                                renormalise=renormalise)
        term.backward()
        assert term.item() == 0.0
        assert torch.isfinite(embedding.grad).all(), embedding.grad
        assert embedding.grad.abs().max().item() == 0.0


def test_the_contrastive_term_keeps_the_embeddings_dtype_whatever_the_weights():
    """Weights read from a Float64 column beside float32 activations: the term (and its
    gradient) stays float32, as the float64 computation rounded, not upcast."""
    from training.loss import contrastive_term

    values = [[1.0, 0.2], [0.9, 0.1], [-0.3, 1.0], [-0.2, 0.8], [0.5, 0.5]]
    labels = torch.tensor([0, 0, 1, 1, 0])
    weight = torch.tensor([3.0, 0.5, 1.0, 0.25, 2.0], dtype=torch.float64)
    single = torch.tensor(values, dtype=torch.float32, requires_grad=True)
    term = contrastive_term(single, labels, weight, tau=0.5, hardness=1.0)
    term.backward()
    assert term.dtype == torch.float32 and single.grad.dtype == torch.float32
    exact = contrastive_term(torch.tensor(values, dtype=torch.float64), labels, weight,
                             tau=0.5, hardness=1.0)
    assert term.item() == pytest.approx(exact.item(), rel=1e-5)


def test_the_renormalised_term_divides_by_the_anchors_weights_even_below_one():
    """Both forms share the sum of w_i l_i: renormalised x sum of the anchors' weights equals
    plain x the number of anchors, also when the weights sum to less than 1."""
    from training.loss import contrastive_term

    embedding = torch.tensor([[1.0, 0.2], [0.9, 0.1], [-0.3, 1.0], [-0.2, 0.8]],
                             dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])  # every item an anchor
    weight = torch.tensor([0.3, 0.4, 0.2, 0.05], dtype=torch.float64)  # sum 0.95
    plain = contrastive_term(embedding, labels, weight, tau=0.5, hardness=1.0)
    renormalised = contrastive_term(embedding, labels, weight, tau=0.5, hardness=1.0,
                                    renormalise=True)
    assert plain.item() > 0
    assert renormalised.item() * 0.95 == pytest.approx(plain.item() * 4)


def test_a_huber_plans_training_loss_is_the_papers_plain_batch_mean_by_default():
    from training.loss import TrainingLoss
    from training.loss_registry import parse_loss

    prediction = torch.tensor(PREDICTION, dtype=torch.float64)
    target = torch.tensor(TARGET, dtype=torch.float64)
    weight = torch.tensor([2.0, 1.0, 3.0, 0.5], dtype=torch.float64)
    loss, _ = TrainingLoss(parse_loss("huber"))(prediction, None, target, weight)
    plain, _ = weighted_huber(prediction, target, weight)
    renormalised, _ = weighted_huber(prediction, target, weight, renormalise=True)
    assert loss.item() == plain.item() != pytest.approx(renormalised.item())


def test_a_clce_plans_loss_is_huber_plus_lambda_times_the_contrastive_term():
    """CLCE's default lambda is 0.5: a weight at or below 1 adds the term too."""
    from training.loss import TrainingLoss, contrastive_term, rating_bins
    from training.loss_registry import parse_loss

    prediction = torch.tensor(PREDICTION, dtype=torch.float64)
    target = torch.tensor([1.5, 1.0, 2.5, 3.0], dtype=torch.float64)  # two bins of two
    weight = torch.tensor([2.0, 1.0, 3.0, 0.5], dtype=torch.float64)
    embedding = torch.tensor([[1.0, 0.2], [0.9, 0.1], [-0.3, 1.0], [0.4, 0.8]],
                             dtype=torch.float64)
    loss, _ = TrainingLoss(parse_loss("clce:bins=2"), edges=[2.0])(
        prediction, embedding, target, weight)
    huber, _ = weighted_huber(prediction, target, weight)
    labels = rating_bins(target, torch.tensor([2.0]))
    assert labels.tolist() == [0, 0, 1, 1]
    term = contrastive_term(embedding, labels, weight, tau=0.1, hardness=1.0)
    assert term.item() > 0
    assert loss.item() == pytest.approx(huber.item() + 0.5 * term.item())


def test_a_plan_with_rating_bins_says_what_it_lacks():
    from training.loss import TrainingLoss
    from training.loss_registry import parse_loss

    with pytest.raises(ValueError, match=r"^4 bins need 3 edges, got 1$"):
        TrainingLoss(parse_loss("clce:bins=4"), edges=[1.0])
    clce = TrainingLoss(parse_loss("clce:bins=2"), edges=[2.0])
    one = torch.ones(2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^loss 'clce' needs the head's penultimate activation$"):
        clce(one, None, one, one)


@pytest.mark.parametrize("renormalise", [False, True])
def test_each_term_of_a_plan_is_added_with_its_weight_and_the_runs_renormalisation(renormalise):
    """Huber + 0.7 x contrastive + 0.3 x cross-entropy, each term renormalised or not as the
    run is: the loss of training.loss's TrainingLoss against its terms computed one by one."""
    from training.loss import (
        TrainingLoss,
        contrastive_term,
        rating_bins,
        weighted_cross_entropy,
    )
    from training.loss_registry import parse_loss

    torch.manual_seed(0)
    prediction = torch.tensor(PREDICTION, dtype=torch.float64)
    target = torch.tensor([1.5, 1.0, 2.5, 3.0], dtype=torch.float64)
    weight = torch.tensor([0.2, 0.1, 0.3, 0.15], dtype=torch.float64)  # sum 0.75: not 1
    embedding = torch.tensor([[1.0, 0.2], [0.9, 0.1], [-0.3, 1.0], [0.4, 0.8]],
                             dtype=torch.float64)
    plan = parse_loss("clce:lambda=0.7,ce=0.3,bins=2,tau=0.5")
    training_loss = TrainingLoss(plan, renormalise=renormalise, edges=[2.0], width=2).double()
    loss, _ = training_loss(prediction, embedding, target, weight)
    labels = rating_bins(target, torch.tensor([2.0]))
    huber, _ = weighted_huber(prediction, target, weight, renormalise=renormalise)
    contrastive = contrastive_term(embedding, labels, weight, tau=0.5, hardness=1.0,
                                   renormalise=renormalise)
    with torch.no_grad():
        logits = training_loss.classifier(embedding)
    cross_entropy = weighted_cross_entropy(logits, labels, weight, renormalise)
    assert contrastive.item() > 0 and cross_entropy.item() > 0
    expected = huber.item() + 0.7 * contrastive.item() + 0.3 * cross_entropy.item()
    assert loss.item() == pytest.approx(expected, rel=1e-12)
