"""The lecture's claims: every claim's sweep composes and dry-runs job by job, its page section is
built from the run dirs (the tables parse back to their `metrics.json`), and `make results` is
incremental (a finished job is not run again)."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import FAST, ONE_TINY_EPOCH

from lightsuite import CONFIG_DIR
from lightsuite.errors import ConfigError
from lightsuite.reporting.claims import CLAIMS
from lightsuite.reporting.results import chosen, claim_jobs, results

CLAIM_FILES = sorted(
    p.stem for p in (Path(CONFIG_DIR) / "experiment" / "claims").glob("*.yaml") if p.stem[0] != "_"
)


def _swept(name: str) -> dict[str, list[str]]:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment=claims/{name}"], return_hydra_config=True)
    return {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}


@pytest.mark.parametrize("name", CLAIM_FILES)
def test_each_claim_dry_runs_as_a_sweep_of_every_job(name, multirun, tmp_path):
    swept = _swept(name)
    if name in CLAIMS:  # the page reads the jobs the config sweeps (the CIFAR-10 variants have no section)
        assert swept == CLAIMS[name].params
    # every setting, each once: jobs that differ only in their seed build the same objects
    multirun(
        f"experiment=claims/{name}", "dry_run=true", "hydra/launcher=basic", "hydra.sweeper.params.seed=1"
    )
    (sweep,) = (tmp_path / "outputs" / "claims").iterdir()
    assert name not in CLAIMS or sweep.name == CLAIMS[name].sweep
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    settings = math.prod(len(values) for key, values in swept.items() if key != "seed")
    assert len(summary["jobs"]) == settings and {j["status"] for j in summary["jobs"]} == {"completed"}


def test_unknown_claim_is_one_line():
    with pytest.raises(ConfigError, match=r"no claim 'degredation'; choose from degradation, "):
        chosen("degredation")


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
PROBE = """<script>window.addEventListener('load', () => {
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({
    images: document.images.length,
    loaded: [...document.images].filter(i => i.complete && i.naturalWidth > 0).length,
    rows: document.querySelectorAll('#claim tbody tr').length,
  });
  document.body.appendChild(out);
});</script>"""


def _in_chromium(page: str, tmp_path: Path) -> dict:
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    cmd += ["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no probe output from Chromium: {proc.stderr[-1500:]}"
    return json.loads(html.unescape(found.group(1)))


def _table(section: str) -> list[dict[str, str]]:
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)) for line in lines[2:]
    ]


def test_a_claim_end_to_end_through_make_results(tmp_path, capfd):
    # the sunspots claim, shrunk: one network, one seed, both horizons, a short fit, one baseline
    tiny = ["hydra.sweeper.params.model=gru", "hydra.sweeper.params.seed=1", "trainer.max_epochs=3"]
    tiny += ["task.baselines=[naive,drift]", "hydra.launcher.n_parallel=2", "task.plot=false", *FAST]
    docs = tmp_path / "docs"
    page = results("forecasting", tmp_path, docs, extra=tiny)
    text = page.read_text()
    section = text.split("## 1. ")[1]
    rows = _table(section)
    assert [(r["model"], r["data.horizon"], r["seeds"]) for r in rows] == [
        ("gru", "1", "1/1"),
        ("gru", "11", "1/1"),
    ]
    jobs = {job.value("data.horizon"): job for job in claim_jobs(CLAIMS["forecasting"], tmp_path)}
    for row in rows:
        metrics = json.loads((jobs[row["data.horizon"]].path / "metrics.json").read_text())
        assert float(row["MASE"]) == pytest.approx(metrics["test/mase"], rel=1e-3)
        best = min(metrics["baseline/naive/test/mase"], metrics["baseline/drift/test/mase"])
        assert float(row["best baseline MASE"]) == pytest.approx(best, rel=1e-3)
    assert (
        "(docs/results/forecasting.png)" not in text
        and (docs / "results" / "forecasting.png").stat().st_size > 0
    )
    assert re.search(
        r"\*\*Did it hold\?\*\* H = 1: the best network \(model=gru, MASE [\d.]+\) (beats|does not beat)",
        text,
    )
    assert re.search(r"2 of 2 jobs finished; \d+ s from the first start to the last end", text), section[:600]

    # the claim's own page beside its runs: the same rows, its figure decoded by a real browser
    own = (tmp_path / "outputs" / "claims" / "forecasting" / "forecasting.html").read_text()
    assert own.count("<tr class=''>") == 2 and "Did it hold?</b> H = 1: the best network" in own
    if CHROMIUM is not None:
        seen = _in_chromium(own, tmp_path)
        assert seen == {"images": 1, "loaded": 1, "rows": 2}, seen

    # again: nothing is trained, the finished jobs return their metrics.json
    stamps = {h: (job.path / "metrics.json").stat().st_mtime_ns for h, job in jobs.items()}
    capfd.readouterr()
    results("forecasting", tmp_path, docs, extra=tiny)
    assert {h: (job.path / "metrics.json").stat().st_mtime_ns for h, job in jobs.items()} == stamps
    assert (
        page.read_text().split("Written")[1].split("\n", 1)[1] == text.split("Written")[1].split("\n", 1)[1]
    )


def test_the_character_claim_shows_samples_at_two_temperatures_drawn_once(make_cfg, tmp_path):
    from lightsuite.reporting.claim_runs import SAMPLE_TEMPERATURES, char_samples
    from lightsuite.reporting.runs import load_job
    from lightsuite.train import train

    text = tmp_path / "text.txt"
    text.write_text("def add(a, b):\n    return a + b\n\n" * 60)
    tiny = ["experiment=chars_lstm", f"data.path={text}", "data.seq_len=32", "model.hidden_size=16"]
    tiny += ["model.num_layers=1", "model.embedding_dim=8", "trainer.max_epochs=1", "test=false", *FAST]
    run = tmp_path / "run"
    train(make_cfg("train", tiny, run_dir=run))
    lines = char_samples([load_job(run, "run")])
    samples = [(run / f"samples_t{t}.txt").read_text() for t in SAMPLE_TEMPERATURES]
    assert all(s.startswith("def ") and 300 < len(s) <= 404 for s in samples) and samples[0] != samples[1]
    assert lines.count("```text") == 2 and samples[0].rstrip() in lines
    # drawn once: a second page shows the same text, read back from the run dir
    (run / "checkpoints").rename(tmp_path / "moved")
    assert char_samples([load_job(run, "run")]) == lines


GAN_TOY = [*FAST, "experiment=gaussians_gan", "data.num_train=512", "data.num_val=200", "data.num_test=200"]
GAN_TOY += [
    "data.batch_size=512",
    "model.hidden_size=16",
    "task.num_eval_samples=200",
    "trainer.max_epochs=1",
]


def test_the_gan_claim_scatters_one_run_per_loss_drawn_once(make_cfg, tmp_path):
    import numpy as np

    from lightsuite.reporting.claim_figures import gan_figure
    from lightsuite.reporting.claim_runs import GAN_SAMPLES, gan_samples
    from lightsuite.reporting.runs import load_job
    from lightsuite.reporting.tables import settings
    from lightsuite.sample import sample
    from lightsuite.train import train

    runs = {}
    for pack, seed in (("2", "1"), ("1", "2")):  # the unpacked run is scattered, whatever its seed
        run = tmp_path / f"seed-{seed}__task.loss-hinge__task.pack-{pack}"
        train(
            make_cfg("train", [*GAN_TOY, "task.loss=hinge", f"task.pack={pack}", f"seed={seed}"], run_dir=run)
        )
        runs[pack] = run
    jobs = [load_job(run, run.name) for run in runs.values()]
    gan_samples(jobs)
    assert not (runs["2"] / GAN_SAMPLES).exists()
    points = np.load(runs["1"] / GAN_SAMPLES)
    # what `lightsuite-sample` draws from the run's best checkpoint with seed 0
    (best,) = (runs["1"] / "checkpoints").glob("epoch_*.ckpt")
    expected = tmp_path / "expected.npy"
    sample(make_cfg("sample", [f"ckpt_path={best}", "num_samples=1000", f"output={expected}", "seed=0"]))
    assert points.shape == (1000, 2) and np.array_equal(points, np.load(expected))

    stamp = (runs["1"] / GAN_SAMPLES).stat().st_mtime_ns
    gan_samples(jobs)  # drawn once: a second page reads them back
    assert (runs["1"] / GAN_SAMPLES).stat().st_mtime_ns == stamp
    fig = gan_figure(CLAIMS["gan_objectives"], settings(jobs, CLAIMS["gan_objectives"].keys))
    bars, panel = fig.axes
    assert len(bars.patches) == 2 and panel.get_title() == "hinge (pack 1, seed 2)"
    (modes, drawn) = panel.collections
    assert len(modes.get_offsets()) == 8 and np.allclose(drawn.get_offsets(), points)


def test_the_ensembles_claim_lesions_each_finished_job_once(make_cfg, tmp_path):
    from lightsuite.reporting.claim_runs import lesion_dir, lesion_metric, lesions
    from lightsuite.reporting.runs import load_job
    from lightsuite.train import train

    run = tmp_path / "outputs" / "claims" / "resnets" / "model-plain20__seed-1"
    train(make_cfg("train", ["model=plain20", *FAST, *ONE_TINY_EPOCH], run_dir=run))
    job = load_job(run, run.name)
    lesions([job])
    out = tmp_path / "outputs" / "claims" / "lesions" / "resnets" / run.name
    assert lesion_dir(job) == out
    study = json.loads((out / "metrics.json").read_text())
    deleted = {k.removeprefix("lesion/acc_without_"): v for k, v in study.items() if "without" in k}
    # plain-20's 9 blocks but the two that change the shape (the first of stages 2 and 3), each once
    stages = {f"stage{s}.block{b}" for s in (1, 2, 3) for b in (1, 2, 3)}
    assert set(deleted) == stages - {"stage2.block1", "stage3.block1"}
    without = list(deleted.values())
    drop = study["lesion/acc_intact"] - sum(without) / len(without)
    assert lesion_metric("lesion/mean_drop")(job) == pytest.approx(drop)

    stamp = (out / "metrics.json").stat().st_mtime_ns
    lesions([job])  # once: the study stays on disk
    assert (out / "metrics.json").stat().st_mtime_ns == stamp
