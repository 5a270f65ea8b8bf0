"""Each adversarial objective: its sign and the direction it pushes D's and G's scores, on tiny cases."""

from __future__ import annotations

import pytest
import torch

from lightsuite.tasks.gan.losses import LOSSES, d_loss, g_loss, gradient_penalty, pack_samples


def _grads(fn, *scores):
    leaves = [torch.tensor(s, requires_grad=True) for s in scores]
    fn(*leaves).backward()
    return [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("name", LOSSES)
def test_discriminator_loss_raises_real_scores_and_lowers_fake_ones(name):
    real_grad, fake_grad = _grads(lambda r, f: d_loss(name, r, f), [0.3, -0.2], [0.1, 0.4])
    # gradient descent moves real scores up and fake scores down
    assert (real_grad < 0).all() and (fake_grad > 0).all()
    # a D that separates well has a lower loss than one that is fooled
    good = d_loss(name, torch.tensor([3.0]), torch.tensor([-3.0]))
    fooled = d_loss(name, torch.tensor([-3.0]), torch.tensor([3.0]))
    assert good < fooled


@pytest.mark.parametrize("name", LOSSES)
def test_generator_loss_raises_fake_scores(name):
    (fake_grad,) = _grads(lambda f: g_loss(name, f), [0.1, -2.0])
    assert (fake_grad < 0).all()
    assert g_loss(name, torch.tensor([3.0])) < g_loss(name, torch.tensor([-3.0]))


def test_minimax_saturates_where_non_saturating_does_not():
    # early in training D rejects G's samples (very negative logits): the paper's reason for its advice
    (minimax,) = _grads(lambda f: g_loss("minimax", f), [-8.0])
    (non_sat,) = _grads(lambda f: g_loss("non_saturating", f), [-8.0])
    assert minimax.abs() < 1e-3 < 0.9 < non_sat.abs()
    # the binary cross-entropy value for D: log 4 at the equilibrium D = 1/2
    assert d_loss("minimax", torch.zeros(3), torch.zeros(3)) == pytest.approx(
        2 * torch.log(torch.tensor(2.0))
    )


def test_hinge_ignores_confident_scores():
    real_grad, fake_grad = _grads(lambda r, f: d_loss("hinge", r, f), [2.0], [-2.0])
    assert real_grad == 0 and fake_grad == 0


def test_gradient_penalty_is_zero_for_a_unit_slope_critic_and_positive_otherwise():
    real, fake = torch.randn(16, 3), torch.randn(16, 3)
    critic = torch.nn.Linear(3, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[0.6, 0.8, 0.0]]))  # gradient norm exactly 1 everywhere
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        critic.weight.mul_(3)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(4.0, rel=1e-5)
    # it is differentiable in D's weights, so the critic step can minimise it
    gradient_penalty(critic, real, fake).backward()
    assert critic.weight.grad.abs().sum() > 0


def test_pack_groups_consecutive_samples():
    x = torch.arange(12.0).reshape(6, 2)
    packed = pack_samples(x, 3)
    assert packed.shape == (2, 6)
    assert packed[1].tolist() == [6.0, 7.0, 8.0, 9.0, 10.0, 11.0]
    images = torch.randn(4, 1, 8, 8)
    assert torch.equal(pack_samples(images, 2)[1, 1], images[3, 0])


class _HalfSquare(torch.nn.Module):
    """D(x) = x^2 / 2 on 1-D samples: its gradient at x is x."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.pow(2).sum(1, keepdim=True) / 2


def test_gradient_penalty_is_taken_between_real_and_generated_samples():
    # real at 2, generated at 0: at eps * 2 the slope is 2 eps, so the penalty is E[(2 eps - 1)^2] = 1/3
    # for eps ~ U(0, 1); at the real samples alone it would be (2 - 1)^2 = 1, at the generated ones 1
    torch.manual_seed(0)
    n = 200_000  # the mean of (2 eps - 1)^2 has a standard error of 0.3 / sqrt(n) < 1e-3
    penalty = gradient_penalty(_HalfSquare(), torch.full((n, 1), 2.0), torch.zeros(n, 1))
    assert penalty.item() == pytest.approx(1 / 3, abs=5e-3)


def test_gradient_penalty_norm_is_per_pack():
    # a linear critic of packs of two 2-D points with |w| = 1: unit slope per pack, though the
    # gradient's first sample has norm 1 and its second 0 (a per-sample penalty would be 1/2)
    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    critic = torch.nn.Linear(4, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[0.6, 0.8, 0.0, 0.0]]))
    assert gradient_penalty(critic, real, fake, pack=2).item() == pytest.approx(0.0, abs=1e-10)
    with torch.no_grad():
        critic.weight.mul_(3)
    assert gradient_penalty(critic, real, fake, pack=2).item() == pytest.approx(4.0, rel=1e-5)
