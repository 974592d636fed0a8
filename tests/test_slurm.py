"""The SLURM profile on a real SLURM: a 1-tile workflow where every job goes through sbatch.

A single-node SLURM (slurmctld + slurmd + munge, 2 fake GPUs) is started on this machine by
``tests/slurm/start-local-slurm.sh`` (root; CI runs as root). The test profile is ``profiles/slurm`` with the
site keys a real site would change (partition, status command, memory that fits the node) overridden; training
runs with ``train.backend: ddp`` on the job's 2 GPUs, so torchrun starts 2 processes inside one SLURM job
(on CPU here: no CUDA behind the fake GPUs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import DATA, ROOT, run

from s2ecosg.validate import validate_cover

pytestmark = pytest.mark.timeout(1500)
SLURM = ROOT / "tests" / "slurm"
BASE = Path("/tmp/s2ecosg-local-slurm")


@pytest.fixture(scope="module")
def cluster() -> Path:
    """A running local SLURM with 2 fake GPUs; stopped afterwards. Yields the folder of its logs."""
    if os.geteuid() != 0:
        pytest.skip("starting a local SLURM needs root (CI runs as root)")
    environment = dict(os.environ, LOCAL_SLURM_BASE=str(BASE), LOCAL_SLURM_FAKE_GPUS="2", LOCAL_SLURM_FORCE="1")
    subprocess.run(["bash", str(SLURM / "stop-local-slurm.sh")], env=environment, capture_output=True, timeout=120)
    started = subprocess.run(
        ["bash", str(SLURM / "start-local-slurm.sh")], env=environment, capture_output=True, text=True, timeout=600
    )
    assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
    yield BASE / "log"
    subprocess.run(["bash", str(SLURM / "stop-local-slurm.sh")], env=environment, capture_output=True, timeout=120)


def layered_profile(folder: Path) -> Path:
    """profiles/slurm with the keys a site changes set for the local cluster; written to ``folder``."""
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    profile.update({"jobs": 2, "latency-wait": 5, "retries": 0, "slurm-status-command": "squeue"})
    profile["slurm-init-seconds-before-status-checks"] = 2
    profile["default-resources"].update(slurm_partition="main", mem_mb=1500, runtime=20, cpus_per_task=1)
    profile["default-resources"].pop("slurm_account")
    for rule in ("train", "predict_block"):
        profile["set-resources"][rule].update(slurm_partition="main", mem_mb=3000, runtime=20, cpus_per_gpu=1)
    profile["set-resources"]["train"]["gpu"] = 2
    (folder / "config.yaml").parent.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def test_one_tile_workflow_through_sbatch(cluster: Path, tmp_path: Path) -> None:
    for name in ("Snakefile", "rules", "envs", "profiles", "report", "config.yaml"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, tmp_path / name)
    shutil.copytree(DATA / "slovenia", tmp_path / "tests" / "data" / "slovenia")
    config = yaml.safe_load((ROOT / "tests" / "workflow" / "config.yaml").read_text())
    config["grid"]["tile_size"] = 3000  # the 1 km² Slovenia set in one grid tile
    config["train"].update(backend="ddp", device="cpu")
    (tmp_path / "slurm.yaml").write_text(yaml.safe_dump(config))
    layered_profile(tmp_path / "profiles" / "slurm_test")
    result = run(
        ["snakemake", "--profile", "profiles/slurm_test", "--configfile", "slurm.yaml"],
        cwd=tmp_path,
        timeout=1400,
        check=False,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:  # what SLURM itself logged of each job (a job that failed before its rule log)
        jobs = sorted((tmp_path / ".snakemake" / "slurm_logs").rglob("*.log"))
        logs = "\n".join(f"--- {path.relative_to(tmp_path)}\n{path.read_text()[-2000:]}" for path in jobs)
        raise AssertionError(f"{output[-6000:]}\n{logs}\n{(cluster / 'slurmctld.log').read_text()[-3000:]}")
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", output))
    ran = re.findall(r"^(?:rule|checkpoint) (\w+):", output, flags=re.MULTILINE)
    assert set(ran) >= {
        "inventory",
        "stage_block",
        "labels_block",
        "shards_block",
        "shards_index",
        "train",
        "predict_block",
        "cover",
    }
    assert len(submitted) == len(ran) - ran.count("all")  # every job but the target went through sbatch
    controller = (cluster / "slurmctld.log").read_text()
    for job in submitted.values():
        assert re.search(rf"JobId={job} .*done|_job_complete: JobId={job} done", controller), job
    results = tmp_path / "results" / "slovenia"
    assert validate_cover(results / "cover" / "S2ECOSG_SLO") == []
    card = json.loads((results / "model" / "bundle.json").read_text())
    assert card["backend"] == "ddp" and card["processes"] == 2  # torchrun: 2 processes in one job of 2 GPUs
    log = (tmp_path / "logs" / "slovenia" / "train.log").read_text()
    assert "[rank 0/2]" in log and "[rank 1/2]" not in log
    jobs = [
        subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True, timeout=60).stdout
        for job in submitted.values()
    ]
    train_job = next(job for job in jobs if "Comment=rule_train" in job)
    assert re.search(r"gpu[:=]2\b", train_job), train_job  # --gpus=2 from the profile's gpu: 2, one job
