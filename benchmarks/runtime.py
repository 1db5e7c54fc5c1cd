"""pyperf benchmark of each backend's default run at 94% sparsity on IOI (EP and HAP under the
shared stopping rule): what a user waits for. With --steps N, EP and HAP run N steps each: the
runtime at an equal budget, which `make bench` prints. The fair comparison of faithfulness for
the time is `hap frontier`.

    python benchmarks/runtime.py -o results/runtime.json [--fast] [--methods eap,eap-ig,ep,hap]
        [--steps N]

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


def discover_time(loops: int, method: str, threads: int, steps: int | None = None) -> float:
    from hap.experiments.registry import get_backend

    state = _setup(threads)
    backend = get_backend(method)
    budget = {"steps": str(steps)} if steps and backend.learns_masks else {}
    config = backend.config(budget)
    start = time.perf_counter()
    for _ in range(loops):
        backend(state["model"], state["graph"], state["task"], 0.94, seed=0, config=config)
    return time.perf_counter() - start


def _worker_args(command: list[str], args) -> None:
    """pyperf's workers are fresh processes: they get our options too, or they would run the
    defaults under the parent's benchmark names."""
    command.extend(("--methods", args.methods, "--threads", str(args.threads)))
    if args.steps:
        command.extend(("--steps", str(args.steps)))


def main() -> None:
    runner = pyperf.Runner(processes=2, values=1, warmups=1, loops=1, add_cmdline_args=_worker_args)
    runner.argparser.add_argument("--methods", default="eap,eap-ig,ep,hap")
    runner.argparser.add_argument("--threads", type=int, default=2)
    runner.argparser.add_argument(
        "--steps", type=int, default=None, help="EP and HAP: this fixed budget (default: the rule)"
    )
    args = runner.parse_args()
    runner.metadata["torch_threads"] = str(args.threads)
    if args.steps:
        runner.metadata["search_steps"] = str(args.steps)
    for method in args.methods.split(","):
        name = f"{method}-ioi-94" + (f"-{args.steps}steps" if args.steps else "")
        runner.bench_time_func(name, discover_time, method, args.threads, args.steps)


if __name__ == "__main__":
    main()
