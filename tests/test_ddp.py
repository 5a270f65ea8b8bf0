"""Real two-process DDP on the CPU (gloo), launched the way a user launches it."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import FAST, run_cli


@pytest.mark.slow
def test_ddp_two_cpu_ranks_shard_the_data(tmp_path):
    run = tmp_path / "ddp"
    proc = run_cli(
        "lightsuite.train",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=1",
        *FAST,
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    # 1,257 training digits in batches of 64 split over two ranks
    assert ckpt["global_step"] == math.ceil(math.ceil(1257 / 64) / 2)
    assert (run / "train_ddp_process_1.log").exists(), "the second rank never started"
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 < metrics["test/acc"] <= 1.0
    # rank 0 recorded the command Hydra parsed, both ranks' devices and the end, once
    record = json.loads((run / "run.json").read_text())["provenance"]
    assert "trainer.devices=2" in record["command"]["overrides"]
    assert record["devices"]["device_count"] == 2 and len(record["segments"]) == 1
    assert record["end"] is not None
