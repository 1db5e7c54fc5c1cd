"""Time-to-faithfulness frontiers: the ratios by hand, and the command on the real model."""

import json

import pytest

from hap.analysis.plots import plot_frontier
from hap.cli import main
from hap.experiments.frontier import Frontier, FrontierPoint, time_to_level


def _point(method, seed, steps, wall, kl, pruning=None):
    return FrontierPoint(method, seed, steps, wall, wall if pruning is None else pruning, kl, 0, 0)


def test_time_to_level_interpolates_between_the_bracketing_budgets():
    curve = [(25, 1.0, 2.0), (50, 2.0, 1.0), (100, 4.0, 0.5)]
    assert time_to_level(curve, 1.5) == pytest.approx(1.5)
    assert time_to_level(curve, 0.75) == pytest.approx(3.0)
    assert time_to_level(curve, 3.0) == 1.0  # already there at the first budget
    assert time_to_level(curve, 0.1) is None


def test_ratios_by_hand():
    # EP: 0.1 s/step + 1 s set-up; HAP: 0.05 s/step + 2 s set-up (its attribution).
    points = []
    for seed, (ep_kls, hap_kls) in enumerate([([2.0, 1.0, 0.5], [1.0, 0.5, 0.4])] * 2):
        for steps, ep_kl, hap_kl in zip((10, 20, 40), ep_kls, hap_kls):
            points.append(_point("ep", seed, steps, 1 + 0.1 * steps, ep_kl))
            points.append(_point("hap", seed, steps, 2 + 0.05 * steps, hap_kl))
    frontier = Frontier(points)
    assert frontier.per_step_slope_ratio() == pytest.approx(0.5)
    equal = frontier.equal_faithfulness()
    assert equal.level == pytest.approx(0.525)
    # EP reaches 0.525 between 20 (3 s, KL 1.0) and 40 steps (5 s, KL 0.5): 3 + 2 * 0.475 / 0.5
    assert equal.reference_s == pytest.approx(4.9)
    # HAP between 10 (2.5 s, KL 1.0) and 20 steps (3 s, KL 0.5): 2.5 + 0.5 * 0.475 / 0.5
    assert equal.method_s == pytest.approx(2.975)
    assert equal.ratio == pytest.approx(2.975 / 4.9)
    assert equal.per_seed == pytest.approx([2.975 / 4.9] * 2)
    assert frontier.common_level_ratio() == pytest.approx(equal.ratio)  # EP is the worse here


def test_every_mask_learner_is_set_against_ep_by_hand():
    """A third learner (a warm start: 3 s of attribution, then 0.1 s a step like EP, KL
    1.0 / 0.5 / 0.3): its ratios against EP in `versus`, beside HAP's legacy fields."""
    points = []
    for steps, ep_kl, hap_kl, warm_kl in zip(
        (10, 20, 40), (2.0, 1.0, 0.5), (1.5, 1.2, 0.9), (1.0, 0.5, 0.3)
    ):
        points.append(_point("ep", 0, steps, 1 + 0.1 * steps, ep_kl))
        points.append(_point("hap", 0, steps, 2 + 0.05 * steps, hap_kl))
        points.append(_point("ep-warm", 0, steps, 3 + 0.1 * steps, warm_kl, 0.1 * steps))
    points.append(_point("eap", 0, None, 0.5, 3.0))
    summary = Frontier(points).summary()
    versus = summary["versus"]["methods"]
    assert list(versus) == ["hap", "ep-warm"] and summary["versus"]["reference"] == "ep"
    assert versus["hap"]["equal_faithfulness"] == summary["equal_faithfulness"]
    assert versus["hap"]["equal_faithfulness"]["ratio"] is None  # HAP never reaches 0.525
    warm = versus["ep-warm"]
    assert warm["per_step_slope_ratio"] == pytest.approx(1.0)
    assert warm["best_kl"] == pytest.approx(0.3)
    # 0.525 between 10 steps (4 s, KL 1.0) and 20 (5 s, KL 0.5): 19.5 steps, 4.95 s; EP: 4.9 s
    assert warm["steps_to_level"] == pytest.approx(19.5)
    assert warm["equal_faithfulness"]["method_s"] == pytest.approx(4.95)
    assert warm["equal_faithfulness"]["ratio"] == pytest.approx(4.95 / 4.9)


def test_frontier_command_json_and_plot(tmp_path, capsys):
    out, plot = tmp_path / "f.json", tmp_path / "f.png"
    code = main(
        [
            "frontier",
            "--methods",
            "ep,hap,eap",
            "--budgets",
            "3,12",
            "--seeds",
            "1",
            "--n-train",
            "16",
            "--n-test",
            "16",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--plot",
            str(plot),
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == json.loads(out.read_text())
    steps = sorted((p["method"], p["steps"] or 0) for p in summary["points"])
    assert steps == [("eap", 0), ("ep", 3), ("ep", 12), ("hap", 3), ("hap", 12)]
    for key in ("method", "seed", "steps", "wall_s", "kl", "logit_diff", "faithfulness"):
        assert key in summary["points"][0]
    assert summary["per_step_slope_ratio"] > 0
    assert "equal_faithfulness_ratio" in summary
    assert summary["configs"]["hap"]["candidate_multiple"] == 4.0
    assert plot.stat().st_size > 10_000


def test_frontier_bad_input_is_one_line(capsys):
    assert main(["frontier", "--methods", "ep,eap", "--device", "cpu"]) == 2
    assert main(["frontier", "--budgets", "50", "--device", "cpu"]) == 2
    assert main(["frontier", "--set", "stepz=3", "--device", "cpu"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("hap: error: ") for line in lines)
    assert "include both" in lines[0] and "two or more" in lines[1] and "valid keys" in lines[2]


def test_plot_frontier_draws_unreached_levels(tmp_path):
    points = [_point("ep", 0, s, s / 10, 1 / s) for s in (10, 20)]
    points += [_point("hap", 0, s, s / 10, 1.0) for s in (10, 20)]
    summary = {
        "task": "ioi",
        "model": "m",
        "target_sparsity": 0.94,
        "seeds": [0],
        "device": "cpu",
        "threads": 2,
        **Frontier(points).summary(),
    }
    assert summary["equal_faithfulness_ratio"] is None
    # the level both reach is HAP's best x 1.05: each at its first budget, 1 s
    assert Frontier(points).common_level_ratio() == pytest.approx(1.0)
    assert plot_frontier(summary, tmp_path / "p.png").stat().st_size > 10_000


def test_median_step_ratio_by_hand_ignores_one_slow_run():
    from dataclasses import replace

    points = []
    for steps in (25, 50, 100, 200):
        points.append(replace(_point("ep", 0, steps, 1.0, 1.0), step_s=0.10))
        points.append(replace(_point("hap", 0, steps, 1.0, 1.0), step_s=0.08))
    points[-1] = replace(points[-1], step_s=0.50)  # HAP's 200-step run hit a burst of load
    frontier = Frontier(points + [_point("eap", 0, None, 0.2, 2.0)])  # no steps: not counted
    assert frontier.median_step_ratio() == pytest.approx(0.8)
