"""The recurrent networks: the equation LSTM equals torch.nn.LSTM; shapes of every configuration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightsuite.errors import ConfigError
from lightsuite.models.rnn import CELLS, EquationLSTM, RecurrentNet


def test_equation_lstm_matches_torch_lstm_outputs_and_gradients():
    torch.manual_seed(0)
    fused = nn.LSTM(3, 5, num_layers=2, batch_first=True).double()
    mine = EquationLSTM(3, 5, num_layers=2).double()
    mine.load_from(fused)
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    state = (torch.randn(2, 4, 5, dtype=torch.float64), torch.randn(2, 4, 5, dtype=torch.float64))
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_f, (h_f, c_f) = fused(x1, state)
    out_m, (h_m, c_m) = mine(x2, state)
    for a, b in ((out_f, out_m), (h_f, h_m), (c_f, c_m)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    weights = torch.randn_like(out_f)
    ((out_f * weights).sum() + h_f.sum() + c_f.pow(2).sum()).backward()
    ((out_m * weights).sum() + h_m.sum() + c_m.pow(2).sum()).backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=0)
    hid = 5
    for layer, cell in enumerate(mine.cells):
        g_ih = getattr(fused, f"weight_ih_l{layer}").grad
        g_hh = getattr(fused, f"weight_hh_l{layer}").grad
        g_b = getattr(fused, f"bias_ih_l{layer}").grad  # the same as bias_hh's: both enter as a sum
        for k, lin in enumerate((cell.W_i, cell.W_f, cell.W_C, cell.W_o)):  # torch's gate order
            rows = slice(k * hid, (k + 1) * hid)
            torch.testing.assert_close(lin.weight.grad[:, :hid], g_hh[rows], atol=1e-5, rtol=0)
            torch.testing.assert_close(lin.weight.grad[:, hid:], g_ih[rows], atol=1e-5, rtol=0)
            torch.testing.assert_close(lin.bias.grad, g_b[rows], atol=1e-5, rtol=0)


def test_equation_lstm_in_float32_within_1e_5():
    torch.manual_seed(1)
    fused = nn.LSTM(2, 8, batch_first=True)
    mine = EquationLSTM(2, 8)
    mine.load_from(fused)
    x = torch.randn(3, 20, 2)
    torch.testing.assert_close(mine(x)[0], fused(x)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_each_cell_maps_a_window_to_the_horizon(cell):
    net = RecurrentNet(cell, output_size=11, input_size=3, hidden_size=8, num_layers=2, dropout=0.1)
    out, _ = net(torch.randn(5, 24, 3))
    assert out.shape == (5, 11)


def test_bidirectional_encoder_uses_both_directions():
    net = RecurrentNet("gru", output_size=1, hidden_size=4, bidirectional=True)
    x = torch.randn(2, 6, 1)
    out = net(x)[0]
    # the backward direction's summary depends on the first input; change only that
    y = x.clone()
    y[:, 0] += 1.0
    assert out.shape == (2, 1) and not torch.allclose(out, net(y)[0])


def test_language_model_predicts_every_step_and_carries_state():
    net = RecurrentNet("lstm", output_size=98, vocab_size=98, per_step=True, hidden_size=16)
    ids = torch.randint(0, 98, (2, 10))
    whole, _ = net(ids)
    first, state = net(ids[:, :6])
    rest, _ = net(ids[:, 6:], state)
    assert whole.shape == (2, 10, 98)
    torch.testing.assert_close(torch.cat([first, rest], 1), whole)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"cell": "transformer"}, "model.cell"),
        ({"hidden_size": 0}, "model.hidden_size=0"),
        ({"dropout": 1.0}, "model.dropout=1.0"),
        ({"bidirectional": True, "per_step": True}, "model.bidirectional"),
    ],
)
def test_bad_settings_are_config_errors(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        RecurrentNet(**{"cell": "lstm", "output_size": 1, **kwargs})


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru", "lstm_equations"])
def test_model_configs_build_with_series_and_text_net_kwargs(make_cfg, name):
    from lightsuite.run.build import build

    node = make_cfg("train", [f"model={name}"]).model
    assert build(node, "model", input_size=3, output_size=11)(torch.randn(2, 5, 3))[0].shape == (2, 11)
    lm = build(node, "model", vocab_size=98, output_size=98, per_step=True)
    assert lm(torch.randint(0, 98, (2, 7)))[0].shape == (2, 7, 98)
