import math

import pytest
import torch
import torch.nn.functional as F

from medkd_bench.train.losses import DEFAULT_ALPHA, DEFAULT_TEMPERATURE, kd_loss


def softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def hand_kd(student, teacher, label, t, alpha):
    ce = -math.log(softmax(student)[label])
    p = softmax([x / t for x in teacher])
    q = softmax([x / t for x in student])
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    return alpha * ce + (1 - alpha) * t * t * kl


@pytest.mark.parametrize("t,alpha", [(1.0, 0.5), (2.0, 0.3), (4.0, 0.9)])
def test_kd_loss_matches_hand_computation(t, alpha):
    students = [[1.0, 2.0, 0.0], [0.3, -1.2, 2.5]]
    teachers = [[0.5, 1.5, 3.0], [2.0, 0.0, -1.0]]
    labels = [1, 2]
    expected = sum(hand_kd(s, te, y, t, alpha) for s, te, y in zip(students, teachers, labels, strict=True)) / 2
    got = kd_loss(torch.tensor(students), torch.tensor(teachers), torch.tensor(labels), t, alpha)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_alpha_one_is_plain_cross_entropy():
    s, te, y = torch.randn(5, 3), torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    assert float(kd_loss(s, te, y, 4.0, 1.0)) == pytest.approx(float(F.cross_entropy(s, y)), rel=1e-6)


def test_identical_logits_leave_only_the_label_term():
    s, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    assert float(kd_loss(s, s.clone(), y, 4.0, 0.25)) == pytest.approx(0.25 * float(F.cross_entropy(s, y)), abs=1e-6)


def test_documented_defaults():
    assert (DEFAULT_TEMPERATURE, DEFAULT_ALPHA) == (4.0, 0.5)
