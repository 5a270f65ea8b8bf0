"""Callbacks that Lightning lacks."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichModelSummary, RichProgressBar
from pytorch_lightning.utilities.model_summary import get_formatted_model_size, get_human_readable_count


class ThrottledRichProgressBar(RichProgressBar):
    """A rich progress bar that redraws at most every `refresh_seconds`.

    Lightning's bar gathers metrics (a device sync each) and redraws after every batch; for a small
    model on a CPU that costs a few percent of the step time. Here a batch only checks a clock.
    """

    def __init__(self, refresh_seconds: float = 0.5, leave: bool = False, **kwargs: Any) -> None:
        super().__init__(refresh_rate=1, leave=leave, **kwargs)
        self.refresh_seconds = refresh_seconds
        self._last_draw = 0.0

    def _due(self, batch_idx: int, total: float | int | None) -> bool:
        now = time.monotonic()
        last = total is not None and batch_idx + 1 >= total
        if last or now - self._last_draw >= self.refresh_seconds:
            self._last_draw = now
            return True
        return False

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._due(batch_idx, self.total_train_batches):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.is_disabled:  # ranks other than 0: the bar never started this loader
            return
        total = self.total_val_batches_current_dataloader
        if self._due(batch_idx, total):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.is_disabled:
            return
        total = self.total_test_batches_current_dataloader
        if self._due(batch_idx, total):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)


class ModelSummaryTable(RichModelSummary):
    """Lightning's rich model summary without its FLOPs column and `Total FLOPs: 0` line when no FLOPs
    were counted: Lightning counts them only for a task with an `example_input_array`, which none has,
    so the zeros say nothing but look like a broken model."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        if total_flops:
            RichModelSummary.summarize(
                summary_data,
                total_parameters,
                trainable_parameters,
                model_size,
                total_training_modes,
                total_flops,
                **summarize_kwargs,
            )
            return
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for name, _ in columns:
            right = name.startswith("Params") or name.endswith("sizes")
            table.add_column(name, style="dim" if name == " " else None, justify="right" if right else "left")
        for row in zip(*(values for _, values in columns), strict=True):
            table.add_row(*row)
        grid = Table.grid(expand=True)
        grid.add_column()
        rows = {
            "Trainable params": get_human_readable_count(int(trainable_parameters)),
            "Non-trainable params": get_human_readable_count(int(total_parameters - trainable_parameters)),
            "Total params": get_human_readable_count(int(total_parameters)),
            "Total estimated model params size (MB)": get_formatted_model_size(model_size),
            "Modules in train mode": total_training_modes["train"],
            "Modules in eval mode": total_training_modes["eval"],
        }
        for label, value in rows.items():
            grid.add_row(f"[bold]{label}[/]: {value}")
        console = get_console()
        console.print(table)
        console.print(grid)


class Stopwatch(pl.Callback):
    """Where a run's wall time went: start-up (to its first training step), training, test.

    `started` is a `time.perf_counter()` reading: the process's start for the first run of a
    process (imports included), the call of `train` for later runs in the same process (a sweep).
    Validation is part of training; a resumed run's start-up includes restoring its checkpoint.
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self.first_step: float | None = None
        self.fit_end: float | None = None
        self.test_span: list[float] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self.first_step is None:
            self.first_step = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fit_end = time.perf_counter()

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.test_span = [time.perf_counter()]

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.test_span.append(time.perf_counter())

    def summary(self) -> str | None:
        """`start-up 4.1 s, training 20.3 s, test 0.9 s`; None for a run that never took a step."""
        if self.first_step is None:
            return None
        parts = [f"start-up {self.first_step - self.started:.1f} s"]
        if self.fit_end is not None:
            parts.append(f"training {self.fit_end - self.first_step:.1f} s")
        if len(self.test_span) == 2:
            parts.append(f"test {self.test_span[1] - self.test_span[0]:.1f} s")
        return ", ".join(parts)
