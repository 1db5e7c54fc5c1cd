"""pyperf benchmark of each backend's default run at 94% sparsity on IOI (EP and HAP under the
shared stopping rule): what a user waits for. The fair method comparison is `hap frontier`.

    python benchmarks/runtime.py -o results/runtime.json [--fast] [--methods eap,eap-ig,ep,hap]

pyperf runs each backend in fresh worker processes (warm-ups first) and reports mean +- std;
`python -m pyperf compare_to` / `stats` read the JSON. Torch threads are pinned (--threads, 2).
"""

from __future__ import annotations

import time

import pyperf
import torch

_STATE: dict = {}


def _setup(threads: int):
    if not _STATE:
        from hap.engine.graph import Graph
        from hap.models import load_model
        from hap.tasks import make_task

        torch.set_num_threads(threads)
        model = load_model(device="cpu")
        _STATE.update(
            model=model,
            graph=Graph.from_model(model),
            task=make_task("ioi", model.tokenizer, n_train=64, n_val=64, n_test=0, seed=0),
        )
    return _STATE


def discover_time(loops: int, method: str, threads: int) -> float:
    from hap.experiments.registry import get_backend

    state = _setup(threads)
    backend = get_backend(method)
    start = time.perf_counter()
    for _ in range(loops):
        backend(state["model"], state["graph"], state["task"], 0.94, seed=0)
    return time.perf_counter() - start


def main() -> None:
    runner = pyperf.Runner(processes=2, values=1, warmups=1, loops=1)
    runner.argparser.add_argument("--methods", default="eap,eap-ig,ep,hap")
    runner.argparser.add_argument("--threads", type=int, default=2)
    args = runner.parse_args()
    runner.metadata["torch_threads"] = str(args.threads)
    for method in args.methods.split(","):
        runner.bench_time_func(f"{method}-ioi-94", discover_time, method, args.threads)


if __name__ == "__main__":
    main()
