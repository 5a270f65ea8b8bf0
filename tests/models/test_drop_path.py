"""Stochastic depth (Huang et al. 2016): linearly decaying drop rates, identity at test time, refusals."""

import csv

import pytest
import torch
from conftest import FAST, FEW_EPOCHS

from lightsuite.errors import ConfigError, user_error
from lightsuite.models import resnet as R
from lightsuite.train import train

DIGIT = (1, 8, 8)
NETS = {
    "resnet20": lambda **kw: R.resnet20(input_shape=DIGIT, **kw),
    "preact_B": lambda **kw: R.cifar_resnet(20, input_shape=DIGIT, shortcut="B", preact=True, **kw),
    "resnet18": lambda **kw: R.resnet18(input_shape=DIGIT, **kw),
}


def blocks(net: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in net.modules() if isinstance(m, (R.BasicBlock, R.Bottleneck))]


@pytest.mark.parametrize("name", sorted(NETS))
def test_eval_mode_is_deterministic_and_the_function_of_p0(name):
    # kept branches are scaled by 1 / survival in training, so at test time nothing is scaled
    torch.manual_seed(0)
    dropping, plain = NETS[name](drop_path=0.5), NETS[name]()
    x = torch.randn(6, *DIGIT)
    dropping.train()
    with torch.no_grad():
        assert not torch.equal(dropping(x), dropping(x))  # training draws
        plain.load_state_dict(dropping.state_dict())  # the running statistics too
        dropping.eval(), plain.eval()
        first = dropping(x)
        assert torch.equal(first, dropping(x))
        torch.testing.assert_close(first, plain(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(NETS))
def test_a_nearly_certain_drop_skips_the_last_block(name):
    # the last block's rate is p itself; its shortcut is identity, so its output is its input
    net = NETS[name](drop_path=1 - 1e-6).train()
    last = blocks(net)[-1]
    seen, branch_calls = {}, []
    last.register_forward_hook(lambda m, args, out: seen.update(x=args[0].clone(), out=out.clone()))
    last.conv1.register_forward_hook(lambda *_: branch_calls.append(1))
    net(torch.randn(8, *DIGIT))
    assert branch_calls == []
    torch.testing.assert_close(seen["out"], seen["x"], rtol=0, atol=0)


def test_drop_rates_decay_linearly_over_all_blocks():
    # p = 0.5 over L = 9 blocks: block l drops with 0.5 * l / 9 = l / 18
    torch.manual_seed(0)
    net = R.resnet20(input_shape=DIGIT, drop_path=0.5).train()
    dropped = {}

    def count(block, args, out):
        same = torch.isclose(out, block.without_branch(args[0])).flatten(1).all(1)
        dropped[block] = dropped.get(block, 0) + int(same.sum())

    for block in blocks(net):
        block.register_forward_hook(count)
    n = 0
    with torch.no_grad():
        for _ in range(2):
            net(torch.randn(2000, *DIGIT))
            n += 2000
    rates = [dropped.get(b, 0) / n for b in blocks(net)]
    expected = [depth / 18 for depth in range(1, 10)]
    assert rates == pytest.approx(expected, abs=0.03)


def test_training_scales_kept_branches_so_the_expected_block_is_the_test_block():
    # Huang et al. multiply the branch by its survival probability at test time; scaling kept
    # branches by 1 / survival in training instead makes the mean training output the test output
    torch.manual_seed(0)
    block = R.BasicBlock(4, 4, preact=True)  # no ReLU after the addition: the output is linear in the draw
    block.drop_rate = 0.75
    x = torch.randn(1, 4, 5, 5).expand(8000, -1, -1, -1)
    with torch.no_grad():
        block.eval()
        tested = block(x[:1])
        block.train()
        for m in block.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()  # the same normalization in both modes, only the drop differs
        trained = block(x)
    dropped = torch.isclose(trained, x).flatten(1).all(1).float().mean()
    assert dropped == pytest.approx(0.75, abs=0.02)
    torch.testing.assert_close(trained.mean(0, keepdim=True), tested, atol=0.06, rtol=0)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: R.resnet20(drop_path=1.0), r"model.drop_path=1.0 must be in \[0, 1\)"),
        (lambda: R.resnet50(drop_path=-0.1), r"model.drop_path=-0.1 must be in \[0, 1\)"),
        (lambda: R.plain20(drop_path=0.2), r"plain net .* would drop the whole signal"),
        (lambda: R.cifar_resnet(20, shortcut="none", drop_path=0.2), "shortcut='none'"),
    ],
)
def test_out_of_range_or_plain_drop_path_is_refused(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_drop_path_on_a_plain_model_config_is_refused_before_any_work(make_cfg):
    with pytest.raises(Exception) as refused:  # Hydra wraps it; the entry points print this one line
        train(make_cfg("train", ["model=plain20", "model.drop_path=0.3", "dry_run=true"]))
    assert isinstance(user_error(refused.value), ConfigError)
    assert str(user_error(refused.value)).startswith("model.drop_path=0.3 on a plain net")


def test_training_with_drop_path_learns_digits(make_cfg, tmp_path):
    metrics = train(
        make_cfg("train", [*FAST, *FEW_EPOCHS, "trainer.limit_train_batches=10", "model.drop_path=0.2"])
    )
    rows = list(csv.DictReader((tmp_path / "run" / "csv" / "metrics.csv").open()))
    losses = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    assert len(losses) == 4
    assert losses[-1] < 0.6 * losses[0], (losses, metrics)
    assert metrics["val/acc_best"] > 0.5
