"""The Ray executor on a local Ray instance (ray.init(num_cpus=2)): the same rows as the local
executor, and a worker killed mid-run. Marked `cluster`: `make test-cluster` runs these (about a
minute and a half on 2 cores); `make test` does not."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest
import torch

from hap.experiments.executors import RayExecutor
from hap.experiments.results import read_results
from hap.experiments.sweep import SweepConfig, run_sweep

pytestmark = pytest.mark.cluster
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    threads = torch.get_num_threads()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()
    torch.set_num_threads(threads)


def _config(tmp_path, name: str, **changes) -> SweepConfig:
    base = dict(
        methods=("eap", "ep"),
        sparsities=(0.9, 0.95),
        seeds=(0,),
        n_train=32,
        n_val=16,
        n_test=32,
        settings={"steps": "30"},
        threads=1,  # the Ray tasks' share: 1 CPU each
        out=tmp_path / name,
        device="cpu",
    )
    return SweepConfig(**{**base, **changes})


def test_ray_gives_the_local_executors_rows(tmp_path, local_ray):
    local = run_sweep(_config(tmp_path, "local.csv"), progress=False)
    remote = run_sweep(
        _config(tmp_path, "ray.csv"), progress=False, executor=RayExecutor(cpus_per_run=1)
    )
    local, remote = (t.sort_values("run_key").reset_index(drop=True) for t in (local, remote))
    assert len(local) == len(remote) == 4
    assert list(local["run_key"]) == list(remote["run_key"])  # the same keys
    assert list(local["circuit"]) == list(remote["circuit"])  # the same circuits
    for column in ("n_edges", "steps", "kl", "logit_diff", "faithfulness"):
        assert local[column].equals(remote[column]), column
    assert (remote["threads"] == 1).all() and (remote["status"] == "ok").all()
    again = run_sweep(
        _config(tmp_path, "ray.csv"), progress=False, executor=RayExecutor(cpus_per_run=1)
    )
    assert len(again) == 4  # finished rows are skipped on Ray too


def _kill_first_worker(killed: list[int], after: float = 1.5, limit: float = 90.0) -> None:
    """kill -9 the first process running a grid point (Ray titles it ray::_ray_point), once it
    has run for `after` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if " ".join(proc.info["cmdline"] or []).startswith("ray::_ray_point"):
                time.sleep(after)
                os.kill(proc.info["pid"], signal.SIGKILL)
                killed.append(proc.info["pid"])
                return
        time.sleep(0.05)


def test_a_killed_worker_leaves_a_retried_row_and_a_complete_csv(tmp_path, local_ray):
    config = _config(tmp_path, "killed.csv", methods=("ep",), settings={"steps": "150"})
    killed: list[int] = []
    killer = threading.Thread(target=_kill_first_worker, args=(killed,))
    killer.start()
    table = run_sweep(config, progress=False, executor=RayExecutor(cpus_per_run=1))
    killer.join()
    assert killed, "no worker was found to kill"
    retried = table[table["status"] == "retried"]
    ok = table[table["status"] == "ok"]
    assert len(retried) == 1 and "Worker" in retried.iloc[0]["error"]
    assert len(ok) == 2 and ok["run_key"].is_unique
    assert retried.iloc[0]["run_key"] in set(ok["run_key"])  # the retry finished the point
    assert len(read_results(config.out)) == 3  # every line on disk a whole row
    again = run_sweep(config, progress=False, executor=RayExecutor(cpus_per_run=1))
    assert len(again) == 3  # nothing left to run
