"""Importing hap changes nothing process-wide: no matplotlib backend, no hub environment
variables (only while a model loads), no torch thread count; and the baselines install under a
name of the project's own."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import os, matplotlib, torch
backend, threads = matplotlib.get_backend(), torch.get_num_threads()
keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
import hap.cli, hap.analysis.plots, hap.experiments.sweep, hap.models, hap.experiments.mib
import hap.io.formats, hap_baselines.eap
assert matplotlib.get_backend() == backend, (backend, matplotlib.get_backend())
assert not any(k in os.environ for k in keys), "set at import"
hap.models.load_model(device="cpu")
assert not any(k in os.environ for k in keys), "left behind by load_model"
assert torch.get_num_threads() == threads
try:
    import baselines
except ModuleNotFoundError:
    print("ok")
"""


def test_import_and_load_leave_the_process_as_it_was(tmp_path):
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env["MPLBACKEND"] = "svg"  # a notebook's own choice, which hap must keep
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
