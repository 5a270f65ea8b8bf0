"""Adversarial training (Goodfellow et al. 2014): G and D trained alternately, with manual optimization.

One Lightning step runs `rounds_per_step` rounds, each of `n_critic` discriminator steps on their own
consecutive slice of the real batch followed by one generator step. With one round per step this is
Lightning's GAN example; several rounds per step only spread Lightning's per-step cost over more
optimizer steps (the math is the same as one round on each of `rounds_per_step` smaller batches).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor, nn
from torch.optim import Optimizer

from lightsuite.errors import ConfigError
from lightsuite.io import save_png
from lightsuite.models.gan import GAN
from lightsuite.tasks.gan.evaluation import GANEvaluation
from lightsuite.tasks.gan.fid import FeatureSource
from lightsuite.tasks.gan.losses import LOSSES, d_loss, g_loss, gradient_penalty, pack_samples
from lightsuite.tasks.gan.pictures import image_grid, log_image, scatter_plot
from lightsuite.tasks.gan.sampling import write_samples
from lightsuite.tasks.optim import (
    make_optimizer,
    named_rates,
    optimizer_params,
    to_channels_last,
    uses_channels_last,
)
from lightsuite.tasks.steps import (
    BACKWARD_HOOKS,
    OPTIMIZER_STEP_HOOKS,
    hooks_can_be_skipped,
    logger_step,
    raise_if_diverged,
)


class GANTask(pl.LightningModule):
    """Trains `net` (a GAN: generator + discriminator) with `loss`; logs `train/d_loss`, `train/g_loss`
    and, offline, `val/modes_covered` + `val/hq_ratio` (2-D mixtures) or `val/fid` + `val/class_confidence`
    (images). `g_optimizer` and `d_optimizer` are partials (Hydra `_partial_: true`) taking parameters.
    A conditional `net` (`model.conditional=true`) is fed the batch's labels, and its test adds
    `test/class_match` and `test/class_match_<k>`. On CUDA the optimizers are fused where torch can, and
    convolutional G and D run in channels_last (`channels_last=null`: on CUDA only), see tasks/optim.py.
    """

    # summed over an epoch's rounds: kept in a mid-epoch checkpoint (run/preemption.py)
    epoch_accumulators: tuple[str, ...] = ("_loss_sums", "_rounds")
    report_metrics: tuple[str, ...] = (
        "val/modes_covered",
        "val/hq_ratio",
        "val/fid",
        "train/d_loss",
        "train/g_loss",
    )

    def __init__(
        self,
        net: GAN,
        g_optimizer: Callable[..., Optimizer],
        d_optimizer: Callable[..., Optimizer],
        loss: str = "non_saturating",
        n_critic: int = 1,
        pack: int = 1,
        gp_weight: float = 10.0,
        ema_decay: float | None = None,
        grad_clip: float | None = None,
        rounds_per_step: int = 1,
        num_eval_samples: int = 2000,
        eval_batch_size: int = 500,
        sample_every_n_epochs: int = 1,
        num_grid_samples: int = 64,
        fid: bool = True,
        fid_classifier: Callable[..., nn.Module] | None = None,
        fid_classifier_ckpt: str | None = None,
        fid_classifier_dir: str | None = None,
        fid_classifier_epochs: int = 10,
        fid_inception_weights: str | None = None,
        fid_features: FeatureSource | None = None,
        channels_last: bool | None = None,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"task.loss={loss!r} is not a GAN loss; choose one of: {', '.join(LOSSES)}")
        for key, value, low in (
            ("n_critic", n_critic, 1),
            ("pack", pack, 1),
            ("rounds_per_step", rounds_per_step, 1),
            ("num_eval_samples", num_eval_samples, 2),
            ("eval_batch_size", eval_batch_size, 1),
            ("sample_every_n_epochs", sample_every_n_epochs, 0),
            ("num_grid_samples", num_grid_samples, 1),
            ("fid_classifier_epochs", fid_classifier_epochs, 1),
        ):
            if value < low:
                raise ConfigError(f"task.{key}={value} must be >= {low}")
        if ema_decay is not None and not 0.0 <= ema_decay < 1.0:
            raise ConfigError(f"task.ema_decay={ema_decay} must be in [0, 1) (or null for no EMA)")
        if grad_clip is not None and not grad_clip > 0:
            raise ConfigError(f"task.grad_clip={grad_clip} must be > 0 (or null for no clipping)")
        if gp_weight < 0:
            raise ConfigError(f"task.gp_weight={gp_weight} must be >= 0")
        if not isinstance(net, GAN):
            raise ConfigError(
                f"task=gan needs a GAN network (model=mlp_gan or model=dcgan), got {type(net).__name__}"
            )
        if net.pack != pack:
            raise ConfigError(
                f"model.pack={net.pack} differs from task.pack={pack}: set both to the same value"
            )
        self.save_hyperparameters(
            ignore=["net", "g_optimizer", "d_optimizer", "fid_classifier", "fid_features"]
        )
        # two optimizers, alternating: Lightning's automatic loop cannot express n_critic or the GP
        self.automatic_optimization = False
        self.net = net
        self.g_optimizer_factory, self.d_optimizer_factory = g_optimizer, d_optimizer
        self.loss, self.n_critic, self.pack, self.gp_weight = loss, n_critic, pack, gp_weight
        self.ema_decay, self.grad_clip, self.rounds_per_step = ema_decay, grad_clip, rounds_per_step
        self.num_eval_samples, self.eval_batch_size = num_eval_samples, eval_batch_size
        self.sample_every_n_epochs = sample_every_n_epochs
        self.channels_last, self._channels_last = channels_last, False  # the setting; setup's decision
        # the exponential moving average of G's weights samples and is evaluated when on
        self.ema = copy.deepcopy(net.generator).requires_grad_(False) if ema_decay is not None else None
        # one noise batch for every picture of a run, so pictures of successive epochs compare
        self.register_buffer(
            "fixed_noise",
            torch.randn(num_grid_samples, net.latent_dim, generator=_seeded(0)),
        )
        # the offline judges (mode counter, FID feature network) are built at fit start and never saved;
        # `fid_features` (the FID step) comes from run code, as this module imports none
        self.evaluation = GANEvaluation(
            fid=fid,
            classifier=fid_classifier,
            classifier_ckpt=fid_classifier_ckpt,
            classifier_dir=fid_classifier_dir,
            classifier_epochs=fid_classifier_epochs,
            num_reference=num_eval_samples,
            inception_weights=fid_inception_weights,
            features=fid_features,
        )
        # the FID classifier is trained in `prepare_data`: by global rank 0 alone, once per run
        self.prepare_data_per_node = False
        self._loss_sums: Tensor | None = None
        self._rounds = 0
        self._lean_rounds = False

    # --- sampling ------------------------------------------------------------------------------------------
    @property
    def sampler(self) -> nn.Module:
        """The generator that samples and is evaluated: the EMA copy when on."""
        return self.ema if self.ema is not None else self.net.generator

    @torch.no_grad()
    def generate(
        self, n: int, generator: torch.Generator | None = None, labels: Tensor | None = None
    ) -> Tensor:
        """`n` samples from the sampling generator, in batches of `eval_batch_size`; a conditional one
        draws the classes `labels` asks for (by default `eval_labels(n)`)."""
        if self.net.conditional and labels is None:
            labels = self.eval_labels(n)
        out = []
        for start in range(0, n, self.eval_batch_size):
            size = min(self.eval_batch_size, n - start)
            z = torch.randn(size, self.net.latent_dim, generator=generator).to(self.device)
            y = None if labels is None else labels[start : start + size].to(self.device)
            out.append(_with_labels(self.sampler, y)(z))
        return torch.cat(out)

    def eval_labels(self, n: int) -> Tensor | None:
        """Balanced labels for `n` samples of a conditional generator, in class order; None otherwise.

        Drawn without randomness, so the noise of a seed is the same as an unconditional run's.
        """
        if not self.net.conditional:
            return None
        return torch.arange(n) * self.net.num_classes // n

    # --- training ------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        g_opt = make_optimizer(self.g_optimizer_factory, self.net.generator.parameters())
        d_opt = make_optimizer(self.d_optimizer_factory, self.net.discriminator.parameters())
        return [g_opt, d_opt], named_rates({"lr-G": g_opt, "lr-D": d_opt})

    def _step(self, opt: Any, loss: Tensor, lean: bool = False) -> None:
        opt.zero_grad(set_to_none=True)
        if lean:
            # the same update without Lightning's per-step hooks and bookkeeping (see `_lean_rounds`)
            loss.backward()
            if self.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(optimizer_params(opt), self.grad_clip)
            opt.optimizer.step()
            return
        self.manual_backward(loss)
        if self.grad_clip is not None:
            # Lightning refuses trainer.gradient_clip_val under manual optimization; clip here instead
            self.clip_gradients(opt, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        opt.step()

    def on_fit_start(self) -> None:
        # Rounds after the first of a Lightning step may bypass Lightning's backward and step dispatch
        # where nothing overrides what it calls: for tiny networks it costs more than the math.
        # `global_step` and the step-progress counters then count the first round's steps only.
        self._lean_rounds = hooks_can_be_skipped(self, BACKWARD_HOOKS + OPTIMIZER_STEP_HOOKS)

    def discriminator_step(
        self, real: Tensor, opt: Any, lean: bool = False, labels: Tensor | None = None
    ) -> Tensor:
        """One D step; a conditional pair's fakes are generated for the real samples' `labels`."""
        self.toggle_optimizer(opt)
        with torch.no_grad():
            z = torch.randn(len(real), self.net.latent_dim, device=real.device)
            fake = _with_labels(self.net.generator, labels)(z)
        # D(x) or D(x, y) with the labels real and fake share: the penalty's interpolates keep them too
        D = _with_labels(self.net.discriminator, labels)
        loss = d_loss(self.loss, D(pack_samples(real, self.pack)), D(pack_samples(fake, self.pack)))
        if self.loss == "wgan_gp" and self.gp_weight > 0:
            loss = loss + self.gp_weight * gradient_penalty(D, real, fake, self.pack)
        self._step(opt, loss, lean)
        self.untoggle_optimizer(opt)
        return loss.detach()

    def generator_step(self, n: int, opt: Any, lean: bool = False, labels: Tensor | None = None) -> Tensor:
        """One G step on `n` samples; a conditional G draws the classes of `labels` (the data's mix)."""
        self.toggle_optimizer(opt)
        z = torch.randn(n, self.net.latent_dim, device=self.device)
        fake = _with_labels(self.net.generator, labels)(z)
        D = _with_labels(self.net.discriminator, labels)
        loss = g_loss(self.loss, D(pack_samples(fake, self.pack)))
        self._step(opt, loss, lean)
        self.untoggle_optimizer(opt)
        if self.ema is not None:
            self._update_ema()
        return loss.detach()

    @torch.no_grad()
    def _update_ema(self) -> None:
        ema, live = list(self.ema.parameters()), list(self.net.generator.parameters())
        torch._foreach_lerp_(ema, live, 1.0 - self.ema_decay)
        for b_ema, b in zip(self.ema.buffers(), self.net.generator.buffers(), strict=True):
            b_ema.copy_(b)  # BatchNorm statistics follow G's

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        real = to_channels_last(batch[0]) if self._channels_last else batch[0]
        g_opt, d_opt = self.optimizers()
        slices = self.rounds_per_step * self.n_critic
        size = len(real) // slices // self.pack * self.pack
        if size == 0:  # a last batch too small to slice: skipped rather than changing the batch size
            return
        reals = real[: size * slices].split(size)
        # a conditional pair learns from the batch's labels; the slices keep them beside their samples
        labels = batch[1][: size * slices].split(size) if self.net.conditional else [None] * slices
        self.evaluation.see_training_batch(real)
        sums = torch.zeros(2, device=real.device)
        for r in range(self.rounds_per_step):
            lean = r > 0 and self._lean_rounds
            for c in range(self.n_critic):
                i = r * self.n_critic + c
                sums[0] += self.discriminator_step(reals[i], d_opt, lean, labels[i])
            sums[1] += self.generator_step(size, g_opt, lean, labels[i])
        sums[0] /= self.n_critic
        self._loss_sums = sums if self._loss_sums is None else self._loss_sums + sums
        self._rounds += self.rounds_per_step

    def on_train_epoch_end(self) -> None:
        if self._loss_sums is None:
            return
        d, g = (self._loss_sums / self._rounds).tolist()
        self._loss_sums, self._rounds = None, 0
        losses = {"train/d_loss": d, "train/g_loss": g}
        lrs = [opt.param_groups[0]["lr"] for opt in self.optimizers()]
        keys = ("task.g_optimizer.lr", "task.d_optimizer.lr")  # configure_optimizers' order
        raise_if_diverged(losses, self.current_epoch, dict(zip(keys, lrs, strict=True)), "task.grad_clip=1.0")
        self.log_dict(losses, prog_bar=True, sync_dist=True)

    # --- evaluation ----------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        # Lightning runs this on global rank 0 only; the other ranks wait (no timeout), then all `setup`
        trainer = self.trainer
        self.evaluation.prepare(
            trainer.datamodule, self.net.sample_shape, trainer.strategy.root_device, trainer.default_root_dir
        )

    def setup(self, stage: str) -> None:
        trainer = self.trainer
        self.evaluation.build(
            trainer.datamodule,
            self.net.sample_shape,
            trainer.strategy.root_device,
            trainer.default_root_dir,
            trainer.world_size,
        )
        # before Lightning moves the weights (keeping their layout) and the optimizers see them
        self._channels_last = uses_channels_last(self.channels_last, trainer.strategy.root_device, self.net)
        if self._channels_last:
            for net in [m for m in (self.net, self.ema) if m is not None]:
                net.to(memory_format=torch.channels_last)
        if stage == "fit" and not self.trainer.fast_dev_run:  # fast_dev_run skips those callbacks
            self._check_monitors()

    def _check_monitors(self) -> None:
        """Fail before training when checkpointing or early stopping watch a metric this task never logs."""
        logged = ["train/d_loss", "train/g_loss", *(f"val/{name}" for name in self.evaluation.metric_names())]
        for callback in self.trainer.callbacks:
            monitor = getattr(callback, "monitor", None)
            key = "model_checkpoint" if isinstance(callback, ModelCheckpoint) else None
            key = "early_stopping" if isinstance(callback, EarlyStopping) else key
            if key and monitor and monitor not in logged:
                raise ConfigError(
                    f"callbacks.{key}.monitor={monitor} is not logged by task=gan on this data; "
                    "use a GAN experiment (experiment=gaussians_gan, digits_dcgan, ...) "
                    f"or one of: {', '.join(logged)}"
                )

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        if not self.trainer.sanity_checking:
            self.evaluation.see_real_batch("val", *batch)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.evaluation.see_real_batch("test", *batch)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self._evaluate("val")
        every = self.sample_every_n_epochs
        if every and (self.current_epoch + 1) % every == 0:
            self._save_picture()

    def on_test_epoch_end(self) -> None:
        self._evaluate("test")

    def _evaluate(self, stage: str) -> None:
        labels = self.eval_labels(self.num_eval_samples)
        fake = self.generate(self.num_eval_samples, generator=_seeded(1234), labels=labels)
        metrics = self.evaluation.compute(stage, fake, self.eval_batch_size, labels)
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, prog_bar=True, sync_dist=True)

    def picture(self, samples: Tensor, labels: Tensor | None = None) -> np.ndarray:
        """A grid of images (one row per class for class-ordered `labels`), or a scatter plot of points
        over the true modes (coloured by `labels`)."""
        if samples.dim() == 4:
            rows = None if labels is None else int(labels.unique().numel())
            return image_grid(samples, nrow=None if rows is None else len(samples) // rows)
        return scatter_plot(samples, self.evaluation.modes, self.evaluation.std, labels=labels)

    @rank_zero_only
    def _save_picture(self) -> None:
        labels = None
        with torch.no_grad():
            if len(self.net.sample_shape) == 1:
                labels = self.eval_labels(self.num_eval_samples)
                samples = self.generate(self.num_eval_samples, generator=_seeded(1234), labels=labels)
            elif self.net.conditional:
                # one row per class, the same noise down each column
                k = self.net.num_classes
                cols = max(1, len(self.fixed_noise) // k)
                labels = torch.arange(k, device=self.device).repeat_interleave(cols)
                samples = self.sampler(self.fixed_noise[:cols].repeat(k, 1), labels)
            else:
                samples = self.sampler(self.fixed_noise)
        array = self.picture(samples, labels)
        save_png(
            array, Path(self.trainer.default_root_dir) / "samples" / f"epoch_{self.current_epoch:03d}.png"
        )
        # at the scalars' step (one per batch), not `global_step` (one per optimizer step: G's and D's)
        log_image(self.loggers, "val/samples", array, logger_step(self.trainer))

    # --- checkpoints and lightsuite-sample -----------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.evaluation.save_modes(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.evaluation.load_modes(checkpoint)

    def sample_to(self, options: DictConfig) -> str:
        """Write `options.num_samples` samples to `options.output`: .png (grid, scatter) or .npy (array);
        `options.label` picks one class of a conditional generator (`tasks/gan/sampling.py`)."""
        return write_samples(self, options)


def _with_labels(net: nn.Module, labels: Tensor | None) -> Callable[[Tensor], Tensor]:
    """G or D as a function of its input alone: a conditional one with `labels` bound (G(., y), D(., y))."""
    return net if labels is None else partial(net, labels=labels)


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
