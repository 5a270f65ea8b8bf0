"""Recurrent networks: torch.nn's fused RNN / LSTM / GRU, and an LSTM written from the gate equations.

One generic network, `RecurrentNet`, serves every sequence task of the suite: a stack of recurrent
layers reads a sequence (real-valued features, or tokens through an embedding) and a linear head
maps either the last state (forecasting, the adding problem) or every state (a language model) to
the outputs. `cell` picks the layer: "rnn", "lstm", "gru" (cuDNN/oneDNN fused kernels) or
"lstm_equations" (`EquationLSTM`, the lecture's equations step by step: slow, for reading).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightsuite.errors import ConfigError

CELLS = ("rnn", "lstm", "gru", "lstm_equations")
State = Tensor | tuple[Tensor, Tensor]


class LSTMCell(nn.Module):
    """One LSTM step (Hochreiter & Schmidhuber 1997), exactly the lecture's equations.

    f_t = σ(W_f·[h_{t-1}, x_t] + b_f)      forget gate
    i_t = σ(W_i·[h_{t-1}, x_t] + b_i)      input gate
    C̃_t = tanh(W_C·[h_{t-1}, x_t] + b_C)   candidate cell state
    C_t = f_t * C_{t-1} + i_t * C̃_t
    o_t = σ(W_o·[h_{t-1}, x_t] + b_o)      output gate
    h_t = o_t * tanh(C_t)
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        # each W acts on the concatenation [h_{t-1}, x_t], as written
        self.W_f = nn.Linear(hidden_size + input_size, hidden_size)
        self.W_i = nn.Linear(hidden_size + input_size, hidden_size)
        self.W_C = nn.Linear(hidden_size + input_size, hidden_size)
        self.W_o = nn.Linear(hidden_size + input_size, hidden_size)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h_prev, c_prev = state
        hx = torch.cat([h_prev, x], dim=-1)
        f = torch.sigmoid(self.W_f(hx))
        i = torch.sigmoid(self.W_i(hx))
        c_tilde = torch.tanh(self.W_C(hx))
        c = f * c_prev + i * c_tilde
        o = torch.sigmoid(self.W_o(hx))
        h = o * torch.tanh(c)
        return h, c

    @torch.no_grad()
    def load_from(self, lstm: nn.LSTM, layer: int = 0) -> None:
        """Copy one layer of a `torch.nn.LSTM` (gates stacked i, f, g, o; separate ih/hh biases)."""
        w_ih, w_hh = getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")
        bias = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
        for k, lin in enumerate((self.W_i, self.W_f, self.W_C, self.W_o)):
            rows = slice(k * self.hidden_size, (k + 1) * self.hidden_size)
            lin.weight.copy_(torch.cat([w_hh[rows], w_ih[rows]], dim=1))
            lin.bias.copy_(bias[rows])


class EquationLSTM(nn.Module):
    """Stacked `LSTMCell`s unrolled over time; the same call and returns as `nn.LSTM(batch_first=True)`."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        self.cells = nn.ModuleList(LSTMCell(size, hidden_size) for size in sizes)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        batch = x.shape[0]
        if state is None:
            zeros = x.new_zeros(self.num_layers, batch, self.hidden_size)
            state = (zeros, zeros)
        hs, cs = [], []
        for layer, cell in enumerate(self.cells):
            if layer > 0:  # as nn.LSTM: dropout between layers, not after the last
                x = self.drop(x)
            h, c = state[0][layer], state[1][layer]
            outputs = []
            for t in range(x.shape[1]):
                h, c = cell(x[:, t], (h, c))
                outputs.append(h)
            x = torch.stack(outputs, dim=1)
            hs.append(h)
            cs.append(c)
        return x, (torch.stack(hs), torch.stack(cs))

    def load_from(self, lstm: nn.LSTM) -> None:
        for layer, cell in enumerate(self.cells):
            cell.load_from(lstm, layer)


class RecurrentNet(nn.Module):
    """Recurrent layers and a linear head: `forward(x, state) -> (outputs, state)`.

    x: (batch, time, input_size) floats, or (batch, time) token ids when `vocab_size` is set.
    outputs: (batch, output_size) from the last step, or (batch, time, output_size) with
    `per_step` (a language model predicts after every character). A bidirectional encoder reads
    the whole window both ways; it cannot be per-step (it would see the future it predicts).
    """

    def __init__(
        self,
        cell: str,
        output_size: int,
        input_size: int = 1,
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        vocab_size: int | None = None,
        embedding_dim: int | None = None,
        per_step: bool = False,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ConfigError(f"model.cell={cell!r} is not one of {', '.join(CELLS)}")
        for key, value in (("hidden_size", hidden_size), ("num_layers", num_layers)):
            if value < 1:
                raise ConfigError(f"model.{key}={value} must be >= 1")
        if output_size < 1 or input_size < 1:
            raise ConfigError(f"model: input_size={input_size} and output_size={output_size} must be >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout={dropout} must be in [0, 1)")
        if bidirectional and (per_step or cell == "lstm_equations"):
            raise ConfigError(
                "model.bidirectional=true needs a whole-window encoder: not per-step prediction "
                "(a language model) and not cell=lstm_equations; set model.bidirectional=false"
            )
        self.cell, self.output_size, self.per_step = cell, output_size, per_step
        self.hidden_size, self.bidirectional = hidden_size, bidirectional
        self.embed = None
        if vocab_size is not None:
            embedding_dim = embedding_dim or hidden_size
            self.embed = nn.Embedding(vocab_size, embedding_dim)
            input_size = embedding_dim
        # torch warns about dropout on a single layer: it only acts between layers
        dropout_between = dropout if num_layers > 1 else 0.0
        if cell == "lstm_equations":
            self.rnn = EquationLSTM(input_size, hidden_size, num_layers, dropout_between)
        else:
            layer = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
            self.rnn = layer(
                input_size,
                hidden_size,
                num_layers,
                batch_first=True,
                dropout=dropout_between,
                bidirectional=bidirectional,
            )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), output_size)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        if self.embed is not None:
            x = self.embed(x)
        seq, state = self.rnn(x, state)
        if not self.per_step:
            # the backward direction has read the whole window at its first step
            last = seq[:, -1]
            seq = (
                torch.cat([last[:, : self.hidden_size], seq[:, 0, self.hidden_size :]], -1)
                if self.bidirectional
                else last
            )
        return self.head(self.drop(seq)), state
