import pytest
import torch

from hap.tasks import GENERATORS, TaskError, check_vocabulary, make_task
from hap.tasks.base import Example, tokenize


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_splits_are_deterministic_disjoint_and_aligned(model, name):
    a = make_task(name, model.tokenizer, n_train=40, n_val=10, n_test=20, seed=3)
    b = make_task(name, model.tokenizer, n_train=40, n_val=10, n_test=20, seed=3)
    c = make_task(name, model.tokenizer, n_train=40, n_val=10, n_test=20, seed=4)
    assert torch.equal(a.test.clean, b.test.clean)
    assert not torch.equal(a.train.clean[:10], c.train.clean[:10])
    assert (len(a.train), len(a.val), len(a.test)) == (40, 10, 20)
    rows = {
        tuple(r[: p + 1].tolist())
        for split in (a.train, a.val, a.test)
        for r, p in zip(split.clean, split.position)
    }
    assert len(rows) == 70  # no prompt appears in two splits
    for split in (a.train, a.val, a.test):
        assert split.clean.shape == split.corrupted.shape
        assert bool((split.clean[:, 0] == model.tokenizer.bos_token_id).all())
        differs = split.clean != split.corrupted
        assert bool(differs.any(1).all())  # every corruption changes the prompt
        check_vocabulary(split, model.cfg.d_vocab)


def test_ioi_answers_are_io_and_corruption_is_abc(model):
    task = make_task("ioi", model.tokenizer, n_train=20, n_val=0, n_test=0, seed=1)
    tok = model.tokenizer
    for row, corrupted, p, io, s in zip(
        task.train.clean,
        task.train.corrupted,
        task.train.position,
        task.train.answers[:, 0],
        task.train.distractors[:, 0],
    ):
        prompt = row[: p + 1].tolist()
        assert prompt.count(int(s)) == 2 and prompt.count(int(io)) == 1
        names = set(corrupted[: p + 1].tolist()) - set(prompt)
        assert len(names) == 3  # three fresh names fill the three name slots
        assert tok.decode([int(io)]).strip() in tok.decode(prompt)


def test_greater_than_answers_are_later_years(model):
    task = make_task("greater-than", model.tokenizer, n_train=20, n_val=0, n_test=0, seed=1)
    tok = model.tokenizer
    for row, p, answers, mask in zip(
        task.train.clean, task.train.position, task.train.answers, task.train.answer_mask
    ):
        start = int(tok.decode([int(row[p - 4])]))  # "... year 17 32 to the year 17"
        years = {int(tok.decode([int(a)])) for a in answers[mask]}
        assert years == set(range(start + 1, 100))


def test_unknown_words_are_refused_with_the_words_named(model):
    bad = [Example("Then, Zyxwv and Mary went", "Then, John and Mary went", (" Mary",), (" John",))]
    with pytest.raises(TaskError, match="Zyxwv"):
        tokenize(bad, model.tokenizer)


def test_multi_token_answers_are_refused(model):
    bad = [
        Example(
            "Then, John and Mary went", "Then, Alice and Mary went", (" Mary went",), (" John",)
        )
    ]
    with pytest.raises(TaskError, match="Mary went"):
        tokenize(bad, model.tokenizer)


def test_vocabulary_mismatch_is_detected(ioi):
    with pytest.raises(TaskError, match="vocabulary"):
        check_vocabulary(ioi.test, d_vocab=10)


def test_unknown_task_names_the_choices(model):
    with pytest.raises(TaskError, match="greater-than"):
        make_task("ioii", model.tokenizer)
