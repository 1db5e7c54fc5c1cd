"""CI regression guard on HAP's speed claim, measured at equal budgets (speedup_check).

HAP and EP run the same ladder of fixed step budgets, interleaved in this one process, on a seed
no default was tuned on. The paper's claims, (a) per-step ratio and (b) equal-faithfulness ratio
beside 0.54, and (c) KL(HAP) <= 1.10 KL(EP) + 0.01 at equal budget, are printed with a verdict
after pytest's summary: on the default model (b) and (c) do not hold (see README), so they cannot
be asserted as claims. What is asserted is that nothing regresses past the committed reference
(results/reference/speedup_check.json) by more than the stated tolerance: the per-step ratios at
94% and 98%, the time ratio to the level both methods reach, and KL(HAP) / KL(EP).

At the paper's scale (a GPT-2-small-shaped model, 32,491 edges) the per-step ratio at 94% is
measured too and printed beside the paper's 0.54. It does not hold here (about 0.9: every node
keeps a candidate edge, so the bridge's forward and backward, over half of a step, are the same
for both methods; README, "The engine at scale"), so it too is guarded against regression rather
than asserted <= 0.54.
"""

from dataclasses import asdict
from pathlib import Path

import pytest
from speedup_check import CheckSettings, ScaleSettings, read_reference

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference" / "speedup_check.json"

TOLERANCE = CheckSettings().tolerance


@pytest.fixture(scope="module")
def reference() -> dict:
    record = read_reference(REFERENCE)
    settings = asdict(CheckSettings())
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
    assert record["settings"] == settings, (
        "the reference figures were measured with other settings: run make speedup-reference"
    )
    return record


@pytest.mark.parametrize("figure", ["per_step_ratio", "per_step_ratio_high", "common_level_ratio"])
def test_time_ratios_do_not_regress(speedup, reference, figure):
    ratio, bar = getattr(speedup.result, figure), reference[figure] * TOLERANCE
    assert ratio <= bar, f"{figure} HAP/EP {ratio:.3f} > {bar:.3f} (reference x {TOLERANCE})"


def test_per_step_ratio_at_gpt2_small_scale_does_not_regress(speedup_at_scale, reference):
    committed = reference["scale"]
    assert committed["settings"] == asdict(ScaleSettings()), "run make speedup-reference"
    bar = committed["ratio"] * ScaleSettings().tolerance
    ratio = speedup_at_scale.ratio
    assert ratio <= bar, f"per-step HAP/EP at GPT-2-small scale {ratio:.3f} > {bar:.3f}"


def test_hap_faithfulness_at_equal_budget_does_not_regress(speedup, reference):
    ratio = speedup.result.kl_hap / speedup.result.kl_ep
    bar = reference["kl_hap"] / reference["kl_ep"] * TOLERANCE
    assert ratio <= bar, f"KL(HAP) / KL(EP) at equal steps {ratio:.3f} > {bar:.3f}"


def test_equal_faithfulness_matches_the_reference(speedup, reference):
    """Whether HAP reaches EP's level depends on test KL alone, which is deterministic on a CPU:
    a change either way is a new finding that must be committed with a new reference. Where it is
    reached, it must stay within the tolerance."""
    ratio, committed = (
        speedup.result.equal_faithfulness_ratio,
        reference["equal_faithfulness_ratio"],
    )
    assert (ratio is None) == (committed is None), (
        f"equal-faithfulness level reached: {ratio is not None}, reference: {committed is not None}"
    )
    if committed is not None:
        assert ratio <= committed * TOLERANCE
