"""Script-launched DDP (2 gloo CPU ranks) inside multiruns and Optuna sweeps; exact DDP evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import FAST, FEW_EPOCHS, run_cli

from lightsuite.launch.ddp import cpu_count
from lightsuite.run.build import build, prepare_run
from lightsuite.train import train

HERE = Path(__file__).parent
# child ranks import the test callbacks and network from this folder
ENV = {"PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"}
TINY = [
    *FAST,
    "trainer=ddp_cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "+trainer.num_sanity_val_steps=0",
    "+callbacks.record._target_=scale_helpers.RecordRanks",
]


def _ranks(job_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((job_dir / "ranks").glob("rank*.json"))]


def _assert_every_rank_trains_the_job(sweep: Path, n_jobs: int, failed: tuple[int, ...] = ()) -> list[dict]:
    """Each job dir holds both ranks' records, equal to each other and to the job's own config."""
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == [str(i) for i in range(n_jobs)]
    seen = []
    for i, job in enumerate(jobs):
        cfg = yaml.safe_load((job / "config.yaml").read_text())
        ranks = _ranks(job)
        assert [r["rank"] for r in ranks] == [0, 1], f"{job}: ranks {ranks}"
        for r in ranks:
            assert r["world_size"] == 2
            assert r["seed"] == cfg["seed"]
            assert r["lr"] == pytest.approx(cfg["task"]["optimizer"]["lr"], rel=1e-12)
            assert r["weight_decay"] == pytest.approx(cfg["task"]["optimizer"]["weight_decay"], rel=1e-12)
            # ranks x threads never oversubscribe the cores, even with OMP_NUM_THREADS set high
            assert r["threads"] * 2 <= max(cpu_count(), 2)
        assert (job / "metrics.json").exists() == (i not in failed)
        seen.append(ranks[0])
    # nothing ran outside the sweep dir (a child re-running the sweep would write under outputs/)
    assert not (sweep.parent / "outputs").exists()
    return seen


@pytest.mark.slow
def test_ddp_inside_a_two_job_multirun_whose_first_job_diverges(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "lightsuite.train",
        "-m",
        *TINY,
        # the failing job first: the sweep must outlive it by more than the observer's 5 s poll
        "task.optimizer.lr=1e30,0.1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env={**ENV, "OMP_NUM_THREADS": "4"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = _assert_every_rank_trains_the_job(sweep, 2, failed=(0,))
    assert [r["lr"] for r in ranks] == [1e30, 0.1]
    # the diverged job failed alone: its ranks' errors did not take the sweep down
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert [job["status"] for job in summary["jobs"]] == ["failed", "completed"]
    assert "train/loss became" in summary["jobs"][0]["error"]
    assert proc.stdout.strip().splitlines()[-1] == f"sweep summary: {sweep / 'sweep_summary.json'}"


@pytest.mark.slow
def test_ddp_inside_a_three_trial_optuna_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "lightsuite.train",
        "hparams_search=digits_resnet",
        "hydra.sweeper.n_trials=3",
        *TINY,
        "model=resnet20",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = _assert_every_rank_trains_the_job(sweep, 3)
    # three sampled trials, each trained by both ranks with its own values
    assert len({r["lr"] for r in ranks}) == 3
    assert all(r["lr"] != 0.1 for r in ranks), "a trial trained with the config's default lr"


@pytest.mark.slow
def test_two_ranks_of_64_match_one_of_128_and_evaluate_exactly(make_cfg, tmp_path):
    """Same data order and seed: the global batch of 2 x 64 is the batch of 1 x 128, step for step."""
    common = [
        *FAST,
        "model._target_=scale_helpers.TinyMLP",
        "~model.shortcut",
        "~model.preact",
        "~model.zero_init_residual",
        "~model.drop_path",
        "data.augment=false",
        "data.val_size=179",
        "data.eval_batch_size=50",
        "task/scheduler=constant",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=4",
        "+trainer.num_sanity_val_steps=0",
        "seed=3",
    ]
    ddp_dir = tmp_path / "ddp"
    proc = run_cli(
        "lightsuite.train",
        *common,
        "trainer=ddp_cpu",
        "data.batch_size=64",
        f"+callbacks.steps={{_target_: scale_helpers.StepLosses, path: {tmp_path / 'ddp_steps.json'}}}",
        f"hydra.run.dir={ddp_dir}",
        cwd=tmp_path,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = f"+callbacks.steps={{_target_: scale_helpers.StepLosses, path: {tmp_path / 'one_steps.json'}}}"
    cfg = make_cfg("train", [*common, "data.batch_size=128", steps])
    train(cfg)
    ddp_steps = json.loads((tmp_path / "ddp_steps.json").read_text())
    one_steps = json.loads((tmp_path / "one_steps.json").read_text())
    assert len(ddp_steps) == len(one_steps) == 8
    # float32 sums in another order: agreement to 1e-5 relative over 8 SGD steps
    assert ddp_steps == pytest.approx(one_steps, rel=1e-5)

    # the DDP run's test and val metrics equal one process evaluating the same checkpoint
    ddp_metrics = json.loads((ddp_dir / "metrics.json").read_text())
    best = next((ddp_dir / "checkpoints").glob("epoch_*.ckpt"))
    check = make_cfg("train", [*common, "train=false", f"ckpt_path={best}"], run_dir=tmp_path / "check")
    single = train(check)
    for key in ("test/acc", "test/loss"):
        assert single[key] == pytest.approx(ddp_metrics[key], rel=1e-6), key
    datamodule, task = prepare_run(check)
    trainer = build(check.trainer, "trainer", logger=False, callbacks=[])
    last = ddp_dir / "checkpoints" / "last.ckpt"
    (val,) = trainer.validate(task, datamodule=datamodule, ckpt_path=str(last), verbose=False)
    for key in ("val/acc", "val/loss"):
        assert val[key] == pytest.approx(ddp_metrics[key], rel=1e-6), key


@pytest.mark.slow
def test_a_pruned_two_rank_trial_stops_on_both_ranks_and_the_search_goes_on(tmp_path):
    """Rank 0 decides; the decision is broadcast, so both ranks leave the fit at the same epoch and
    skip the test stage together (a rank that trained on would wait in an all-reduce forever)."""
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "lightsuite.train",
        f"--config-dir={HERE / 'user_conf'}",
        "hparams_search=hopeless",
        *FAST,
        "trainer=ddp_cpu",
        *FEW_EPOCHS,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=ENV,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    statuses = [job["status"] for job in summary["jobs"]]
    assert statuses[:2] == ["completed"] * 2 and "pruned" in statuses[2:], summary
    for job in summary["jobs"]:
        metrics = json.loads((Path(job["run_dir"]) / "metrics.json").read_text())
        assert ("test/acc" in metrics) == (job["status"] == "completed"), (job, metrics)
