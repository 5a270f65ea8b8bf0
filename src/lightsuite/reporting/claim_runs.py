"""The work some claims do on their finished jobs before the page reads them: samples of the character
model and of each GAN loss, lesion studies of the 20-layer nets. Through the entry points
(`lightsuite-sample`, `lightsuite-eval`), never the run code, and once: the results stay on disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from lightsuite.io import write_text
from lightsuite.reporting.runs import DONE, Job


def _best_checkpoint(job: Job) -> Path | None:
    ckpts = sorted((job.path / "checkpoints").glob("epoch_*.ckpt"))
    return ckpts[0] if ckpts else None


def lesion_dir(job: Job) -> Path:
    """Where a job's lesion study goes: beside the sweeps, never inside a run dir the report reads."""
    sweep = job.path.parent
    return sweep.parent / "lesions" / sweep.name / job.path.name


def lesions(jobs: list[Job]) -> None:
    """Each finished job's best checkpoint tested with one block removed at a time, once
    (`lightsuite-eval lesion=blocks`: the report runs entry points, never run code)."""
    for job in jobs:
        out, ckpt = lesion_dir(job), _best_checkpoint(job)
        if job.status != DONE or (out / "metrics.json").is_file() or ckpt is None:
            continue
        args = [f"ckpt_path={ckpt}", "lesion=blocks", f"hydra.run.dir={out}"]
        done = subprocess.run(
            [sys.executable, "-m", "lightsuite.eval", *args], capture_output=True, text=True
        )
        if done.returncode != 0:  # the table then shows a dash: say why here
            said = (done.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"lesion study of {job.path} failed: {said}", file=sys.stderr)


GAN_SAMPLES = "samples_scatter.npy"  # in the run dir, beside the checkpoints it was drawn from
GAN_SAMPLE_COUNT = 1000


def gan_sample_jobs(jobs: list[Job]) -> dict[str, Job]:
    """Per GAN loss, the job whose samples the page scatters: the first finished one (lowest pack,
    then seed), so the picture shows one run as it came out, not a chosen best."""
    picked: dict[str, Job] = {}
    for job in sorted(jobs, key=lambda j: (str(j.value("task.pack")), str(j.value("seed")))):
        loss = job.value("task.loss")
        if job.status == DONE and loss is not None and loss not in picked:
            picked[loss] = job
    return picked


def gan_samples(jobs: list[Job]) -> None:
    """Draw each picked job's samples once (`lightsuite-sample ... output=<run dir>/samples_scatter.npy`)
    from its best checkpoint, with a fixed seed."""
    for job in gan_sample_jobs(jobs).values():
        out, ckpt = job.path / GAN_SAMPLES, _best_checkpoint(job)
        if out.is_file() or ckpt is None:
            continue
        args = [f"ckpt_path={ckpt}", f"num_samples={GAN_SAMPLE_COUNT}", f"output={out}", "seed=0"]
        done = subprocess.run(
            [sys.executable, "-m", "lightsuite.sample", *args], capture_output=True, text=True
        )
        if done.returncode != 0:  # the figure then leaves its panel empty: say why here
            said = (done.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"samples of {job.path} failed: {said}", file=sys.stderr)


def gan_modes(job: Job) -> list[list[float]]:
    """The true modes the GAN's best checkpoint stores (what `lightsuite-sample` draws its rings at);
    [] when it has none."""
    import torch

    ckpt = _best_checkpoint(job)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True) if ckpt is not None else {}
    return list((saved.get("gan_modes") or {}).get("modes") or [])


def lesion_metric(name: str) -> Callable[[Job], float | None]:
    def read(job: Job) -> float | None:
        file = lesion_dir(job) / "metrics.json"
        value = json.loads(file.read_text()).get(name) if file.is_file() else None
        return float(value) if isinstance(value, int | float) else None

    return read


SAMPLE_TEMPERATURES = (0.5, 1.0)


def char_samples(jobs: list[Job]) -> list[str]:
    """Samples of the first finished job's best checkpoint at two temperatures, kept in its run dir
    (`samples_t<temperature>.txt`, drawn once with a fixed seed)."""
    done = [job for job in jobs if job.status == DONE]
    if not done:
        return []
    job = done[0]
    ckpt = _best_checkpoint(job) or job.path / "checkpoints" / "last.ckpt"
    lines = []
    for temperature in SAMPLE_TEMPERATURES:
        file = job.path / f"samples_t{temperature}.txt"
        if not file.is_file() and ckpt.is_file():
            # through lightsuite-sample: the report reads run dirs and runs the entry points, never run code
            args = [f"ckpt_path={ckpt}", "prompt='def '", "length=400", f"temperature={temperature}"]
            args += ["seed=0", f"hydra.run.dir={job.path / 'samples'}", "hydra.output_subdir=null"]
            cmd = [sys.executable, "-m", "lightsuite.sample", *args]
            drawn = subprocess.run(cmd, capture_output=True, text=True, check=False)
            # the text, then the command's own closing line ("sampled 400 characters ...")
            text = drawn.stdout.rstrip("\n").rpartition("\nsampled ")[0]
            if drawn.returncode == 0 and text.startswith("def "):
                write_text(file, text)
        if file.is_file():
            lines += [f"Temperature {temperature}, after the prompt `def `:", "", "```text"]
            lines += [file.read_text().rstrip(), "```", ""]
    return lines
