"""Pictures of a classifier's test set: its confusion matrix and the images it got most wrong.

The worst images are kept as a running top-k (`WorstImages`), so a test set of any size holds k
images in memory; the figures are drawn once, at the end of the test stage, by rank 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pytorch_lightning.loggers import Logger, MLFlowLogger
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lightsuite.io import csv_text, save_png, write_text
from lightsuite.tasks.gan.pictures import log_image

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# the files the test stage leaves in the run dir (the report shows them)
CONFUSION_PNG, CONFUSION_CSV = "confusion_matrix.png", "confusion_matrix.csv"
WORST_PNG, WORST_CSV = "worst_test_images.png", "worst_test_images.csv"
# what `WorstImages.compute()` returns, each in the same order (lowest true-class probability first)
WORST_FIELDS = ("images", "labels", "preds", "true_prob", "pred_prob")


class WorstImages(Metric):
    """The `k` images whose true class got the lowest probability, with their labels and predictions.

    Each update keeps only the k lowest of what it held and the new batch. Under DDP every rank keeps
    its own k; the states are concatenated over ranks (as torchmetrics syncs any "cat" state) and
    `compute()` picks the k lowest of all of them, which are the k lowest of the whole test set.
    """

    is_differentiable = False
    full_state_update = False

    def __init__(self, k: int = 16, **kwargs) -> None:
        super().__init__(**kwargs)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k = k
        for name in WORST_FIELDS:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, images: Tensor, logits: Tensor, labels: Tensor) -> None:
        probs = logits.detach().float().softmax(dim=1)
        pred_prob, preds = probs.max(dim=1)
        batch = {
            "images": images.detach(),
            "labels": labels,
            "preds": preds,
            "true_prob": probs.gather(1, labels.unsqueeze(1)).squeeze(1),
            "pred_prob": pred_prob,
        }
        held = {name: torch.cat([*getattr(self, name), batch[name]]) for name in WORST_FIELDS}
        keep = _lowest(held["true_prob"], self.k)
        for name, values in held.items():
            setattr(self, name, [values[keep]])

    def compute(self) -> dict[str, Tensor]:
        if isinstance(self.true_prob, list) and not self.true_prob:  # no update (a synced state is a tensor)
            return {}
        held = {name: dim_zero_cat(getattr(self, name)) for name in WORST_FIELDS}
        keep = _lowest(held["true_prob"], self.k)
        return {name: values[keep] for name, values in held.items()}


def _lowest(scores: Tensor, k: int) -> Tensor:
    # stable: of equal scores the one seen first stays, so the choice does not depend on batching
    return torch.argsort(scores, stable=True)[:k]


def for_display(images: Tensor, mean: Tensor | None, std: Tensor | None) -> Tensor:
    """Normalized (N, C, H, W) images back to [0, 1]: `x * std + mean` per channel (or one value for
    all) where the data gives them, else each image stretched to its own range."""
    images = images.detach().float().cpu()
    if (
        mean is not None
        and std is not None
        and mean.numel() == std.numel()
        and std.numel() in (1, images.shape[1])
    ):
        shape = (1, -1, 1, 1)
        return (images * std.float().cpu().view(shape) + mean.float().cpu().view(shape)).clamp(0, 1)
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    return (images - low) / (high - low).clamp_min(1e-12)


def confusion_figure(matrix: Tensor, names: Sequence[str]) -> Figure:
    """torchmetrics' own drawing of a confusion matrix (counts written in the cells up to 20 classes)."""
    from torchmetrics.utilities.plot import plot_confusion_matrix

    n = matrix.shape[0]
    side = min(20.0, max(5.0, 0.45 * n + 2))
    fig, ax = _figure(side, side)
    plot_confusion_matrix(matrix.cpu(), ax=ax, add_text=n <= 20, labels=list(names))
    fig.subplots_adjust(left=0.12, right=0.98, bottom=0.12, top=0.94)
    accuracy = matrix.diagonal().sum().item() / max(1, matrix.sum().item())
    ax.set_title(f"test set: {int(matrix.sum())} images, accuracy {accuracy:.3f}")
    return fig


def worst_figure(worst: dict[str, Tensor], names: Sequence[str], images: Tensor) -> Figure:
    """The worst-classified images in one grid, each captioned with its true and predicted class and the
    probabilities the network gave them (red: misclassified); `images` are ready for display, in [0, 1].

    One axes showing one mosaic, not an axes per image: a figure of 16 axes takes a second to draw.
    """
    n, channels, height, width = images.shape
    if channels != 3:  # grey, or channels that are no colours (2, 4, ...): their mean, in grey
        images = images.mean(dim=1, keepdim=True)
    scale = max(1, -(-32 // max(height, width)))  # small images (8x8 digits) enlarged to 32 pixels or more
    pictures = images.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3).expand(n, 3, -1, -1)
    height, width = height * scale, width * scale
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    gap, band = max(2, width // 16), height // 2  # white space between images and for the captions
    cell_h, cell_w = height + band, width + gap
    mosaic = np.ones((rows * cell_h, cols * cell_w - gap, 3), dtype=np.float32)
    fig, ax = _figure(1.6 * cols, 1.6 * cols * mosaic.shape[0] / mosaic.shape[1] + 0.4)
    for i in range(n):
        top, left = (i // cols) * cell_h + band, (i % cols) * cell_w
        mosaic[top : top + height, left : left + width] = pictures[i].permute(1, 2, 0).numpy()
        true, pred = names[int(worst["labels"][i])], names[int(worst["preds"][i])]
        p_true, p_pred = float(worst["true_prob"][i]), float(worst["pred_prob"][i])
        caption = f"true {true} ({p_true:.2f})\npred {pred} ({p_pred:.2f})"
        color = "black" if true == pred else "firebrick"
        ax.text(left + width / 2, top - 1, caption, ha="center", va="bottom", fontsize=7, color=color)
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"the {n} test images with the lowest probability of their true class", fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99 - 0.4 / fig.get_figheight())
    return fig


def _figure(width: float, height: float) -> tuple[Figure, Any]:
    """A figure of one axes drawn by Agg, outside pyplot: a run that fails while drawing leaves no open
    figure behind, and no backend is switched for the rest of the process."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def figure_array(fig: Figure) -> np.ndarray:
    """A figure rendered once as an (H, W, 3) uint8 array, the one form the PNG file and every logger take."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def log_picture(loggers: Iterable[Logger], key: str, array: np.ndarray, step: int) -> None:
    """Hand an (H, W, 3) uint8 image to every logger that takes images: W&B and TensorBoard (as the GAN
    pictures are), and MLflow as an artifact `<key>.png`; the CSV logger has no images."""
    loggers = list(loggers)
    log_image(loggers, key, array, step)
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            logger.experiment.log_image(logger.run_id, array, artifact_file=f"{key.replace('/', '_')}.png")


def confusion_csv(matrix: Tensor, names: Sequence[str]) -> str:
    """The matrix as CSV: one row per true class, one column per predicted class, counts in the cells."""
    rows = [[name, *row] for name, row in zip(names, matrix.tolist(), strict=True)]
    return csv_text([["true \\ predicted", *names], *rows])


def worst_csv(worst: dict[str, Tensor], names: Sequence[str]) -> str:
    """The worst images' captions as CSV, in the grid's order (row by row): what the picture says, as data."""
    columns = (worst[key].tolist() for key in ("labels", "preds", "true_prob", "pred_prob"))
    rows = [
        [i, names[label], names[pred], f"{p_true:.6g}", f"{p_pred:.6g}"]
        for i, (label, pred, p_true, p_pred) in enumerate(zip(*columns, strict=True), start=1)
    ]
    return csv_text([["rank", "true", "predicted", "true_prob", "predicted_prob"], *rows])


def class_names(datamodule: Any, num_classes: int) -> list[str]:
    """The data's class names where it has them (an image folder's sub-folders), else 0, 1, 2, ..."""
    names = getattr(datamodule, "classes", None)
    if isinstance(names, (list, tuple)) and len(names) == num_classes:
        return [str(name) for name in names]
    return [str(i) for i in range(num_classes)]


def display_stats(datamodule: Any) -> tuple[Tensor | None, Tensor | None]:
    """The per-channel mean and std the data normalized its images with, where it says so."""
    if getattr(datamodule, "pixels", None) == "symmetric":  # [0, 1] mapped onto [-1, 1]
        return torch.tensor([0.5]), torch.tensor([0.5])
    mean, std = getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
    if isinstance(mean, Tensor) and isinstance(std, Tensor) and mean.numel() and mean.numel() == std.numel():
        return mean, std
    return None, None


def write_test_pictures(
    matrix: Tensor,
    worst: dict[str, Tensor],
    run_dir: str | Path,
    loggers: Iterable[Logger],
    step: int,
    datamodule: Any,
) -> list[Path]:
    """`confusion_matrix.png`/`.csv` and `worst_test_images.png`/`.csv` in the run dir, and the two
    pictures (`test/confusion_matrix`, `test/worst_images`) in every image logger. Rank 0 only: the
    caller computes (a collective under DDP) on every rank first."""
    run_dir, loggers = Path(run_dir), list(loggers)
    names = class_names(datamodule, matrix.shape[0])
    written = [write_text(run_dir / CONFUSION_CSV, confusion_csv(matrix, names))]
    pictures = {"test/confusion_matrix": (CONFUSION_PNG, confusion_figure(matrix, names))}
    if worst and worst["images"].dim() == 4:  # (N, C, H, W) images; other inputs have no picture
        mean, std = display_stats(datamodule)
        shown = for_display(worst["images"], mean, std)
        pictures["test/worst_images"] = (WORST_PNG, worst_figure(worst, names, shown))
        written.append(write_text(run_dir / WORST_CSV, worst_csv(worst, names)))
    for key, (file, fig) in pictures.items():
        array = figure_array(fig)
        written.append(save_png(array, run_dir / file))
        log_picture(loggers, key, array, step)
    return written
