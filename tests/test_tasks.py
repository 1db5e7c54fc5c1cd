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


def _byte_level_bpe(corpus: list[str], vocab_size: int = 3000):
    """A real byte-level BPE tokenizer trained offline on `corpus`: words it saw often become
    single tokens, the rest split into pieces (as a pretrained model's tokenizer splits rare names)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(corpus * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>")


def _corpus(names: tuple[str, ...], bare: bool = True) -> list[str]:
    from hap.tasks.templates import IOI_TEMPLATES
    from hap.tasks.vocab import OBJECTS, PLACES

    lines = [t.replace("{", "").replace("}", "") for t in IOI_TEMPLATES]
    words = [f" {w} {w}" for w in names + PLACES + OBJECTS]
    words += [f"{w} {w}" for w in names] if bare else []
    return lines + words


def test_ioi_keeps_only_single_token_words_of_a_bpe_tokenizer():
    from hap.tasks.vocab import FEMALE_NAMES, MALE_NAMES, words_for

    seen = FEMALE_NAMES[:8] + MALE_NAMES[:8]
    tokenizer = _byte_level_bpe(_corpus(seen))
    words, dropped = words_for(tokenizer)
    assert set(words.names) == set(seen)  # every name the tokenizer never saw is split, dropped
    assert "Victoria" in dropped["female_names"]
    task = make_task("ioi", tokenizer, n_train=20, n_val=0, n_test=0, seed=1, prepend_bos=False)
    used = {tokenizer.decode([int(i)]).strip() for i in task.train.answers.flatten()}
    assert used <= set(seen)
    assert task.train.clean.shape == task.train.corrupted.shape


def test_names_that_open_a_prompt_must_be_single_tokens_bare_too():
    """Gendered-Pronoun starts prompts with a name, IOI never does: a name that is one token only
    after a space serves IOI and is dropped for Gendered-Pronoun."""
    from hap.tasks.vocab import FEMALE_NAMES, JOBS, MALE_NAMES, words_for

    spaced_only = FEMALE_NAMES[:6] + MALE_NAMES[:6]
    corpus = _corpus(spaced_only, bare=False) + [f" {j} {j}" for j in JOBS]
    corpus += [f"{w} {w}" for w in FEMALE_NAMES[6:12] + MALE_NAMES[6:12]]
    tokenizer = _byte_level_bpe(corpus)
    ioi_words, _ = words_for(tokenizer)
    pronoun_words, dropped = words_for(tokenizer, bare_names=True)
    assert set(spaced_only) <= set(ioi_words.names)
    assert not set(spaced_only) & set(pronoun_words.names)
    assert "Mary" in dropped["female_names"]


def test_too_few_single_token_names_are_refused_with_the_list():
    from hap.tasks.vocab import FEMALE_NAMES, MALE_NAMES

    tokenizer = _byte_level_bpe(_corpus(FEMALE_NAMES[:8] + MALE_NAMES[:2]))
    with pytest.raises(TaskError, match=r"male_names: 2 left \(need 5\), dropped \[.*'Michael'"):
        make_task("ioi", tokenizer, n_train=4, n_val=0, n_test=0)


def test_greater_than_reads_the_next_digit_where_years_split_into_digits():
    from hap.tasks.vocab import EVENTS, NAMES

    events = [f" {e} {e}" for e in EVENTS]
    tokenizer = _byte_level_bpe(_corpus(NAMES) + events + ["The war lasted from the year 1"])
    task = make_task("greater-than", tokenizer, n_train=30, n_val=0, n_test=0, seed=3)
    data = task.train
    ends = [tokenizer.decode(row[: p + 1]) for row, p in zip(data.clean, data.position)]

    def digits(ids: torch.Tensor, mask: torch.Tensor) -> list[int]:
        return sorted(int(tokenizer.decode([int(i)])) for i in ids[mask])

    for end, answers, a_mask, distractors, d_mask in zip(
        ends, data.answers, data.answer_mask, data.distractors, data.distractor_mask
    ):
        tens = int(end.split("year ")[1][2])  # "... the year 1732 to the year 17" -> 3
        assert digits(answers, a_mask) == list(range(tens + 1, 10))
        assert digits(distractors, d_mask) == list(range(tens))
        assert end.endswith(f"to the year {end.split('year ')[1][:2]}")


def test_greater_than_is_refused_where_years_split_otherwise():
    from hap.tasks.vocab import EVENTS, NAMES

    events = [f" {e} {e}" for e in EVENTS]
    corpus = _corpus(NAMES) + events + ["The war lasted from the year 173 173 173"]
    tokenizer = _byte_level_bpe(corpus)
    with pytest.raises(TaskError, match="splits ' 1732' into"):
        make_task("greater-than", tokenizer, n_train=4, n_val=0, n_test=0)


def test_bos_convention_is_explicit(model):
    kwargs = {"n_train": 6, "n_val": 0, "n_test": 0, "seed": 2}
    implicit = make_task("ioi", model.tokenizer, **kwargs).train
    with_bos = make_task("ioi", model.tokenizer, prepend_bos=True, **kwargs).train
    without = make_task("ioi", model.tokenizer, prepend_bos=False, **kwargs).train
    assert model.prepend_bos is True  # the embedded model was trained with BOS first
    assert torch.equal(implicit.clean, with_bos.clean)
    assert bool((with_bos.clean[:, 0] == model.tokenizer.bos_token_id).all())
    assert torch.equal(with_bos.clean[:, 1:], without.clean[:, : with_bos.clean.shape[1] - 1])
    assert torch.equal(with_bos.position - 1, without.position)
