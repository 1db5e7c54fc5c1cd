"""CI regression guard on HAP's speed claim, measured at equal budgets (hap.speedup).

HAP and EP run the same ladder of fixed step budgets, interleaved in this one process, on a seed
no default was tuned on. (c) is asserted outright; (a) the per-step cost ratio and (b) the
equal-faithfulness time ratio must not rise more than the stated tolerance above the committed
reference figures (results/reference/speedup_check.json). The figures and the verdict on the
paper's 0.54 are printed after pytest's summary.
"""

from dataclasses import asdict

import pytest

from hap.speedup import CheckSettings, read_reference


@pytest.fixture(scope="module")
def reference() -> dict:
    record = read_reference()
    assert record["settings"] == asdict(CheckSettings()) | {
        "budgets": list(CheckSettings().budgets)
    }, "the reference figures were measured with other settings: re-run speedup_reference.py"
    return record


def test_hap_is_as_faithful_as_ep_at_equal_budget(speedup):
    result = speedup.result
    assert result.kl_hap <= 1.10 * result.kl_ep + 0.01, (
        f"at equal steps, test KL HAP {result.kl_hap:.3f} > 1.10 x EP {result.kl_ep:.3f} + 0.01"
    )


def test_per_step_cost_ratio_does_not_regress(speedup, reference):
    bar = reference["per_step_ratio"] * CheckSettings().tolerance
    ratio = speedup.result.per_step_ratio
    assert ratio <= bar, f"per-step cost ratio HAP/EP {ratio:.3f} > {bar:.3f} (reference x tol)"


def test_equal_faithfulness_ratio_does_not_regress(speedup, reference):
    assert reference["equal_faithfulness_ratio"] is not None, "the reference never reached EP's KL"
    bar = reference["equal_faithfulness_ratio"] * CheckSettings().tolerance
    ratio = speedup.result.equal_faithfulness_ratio
    assert ratio is not None, "HAP no longer reaches EP's faithfulness level on the ladder"
    assert ratio <= bar, f"equal-faithfulness ratio HAP/EP {ratio:.3f} > {bar:.3f}"
