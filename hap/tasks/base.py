"""The shared task layer: prompts -> token tensors, answer ids and deterministic splits.

A task is data, not code: each task module only writes `Example`s (clean prompt, corrupted prompt,
answer and distractor strings). This module turns them into tensors for any tokenizer and refuses
prompts the tokenizer cannot represent faithfully (unknown words, multi-token answers, clean and
corrupted prompts of different lengths), because a silent re-tokenisation changes the task.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

from hap.errors import UserError


class TaskError(UserError):
    """A task cannot be built for this tokenizer or used with this model."""


@dataclass(frozen=True)
class Example:
    """One prompt pair before tokenisation.

    `answers` / `distractors` are the exact strings that continue the prompt (with a leading space
    where the continuation is a new word), each of which must be a single token.
    """

    clean: str
    corrupted: str
    answers: tuple[str | int, ...]  # an int is a token id (task files in EAP-IG's format)
    distractors: tuple[str | int, ...]


Generator = Callable[[random.Random, "bool | None"], Example]


def heldout_key(*parts: object, fraction: int = 10) -> bool:
    """Whether a combination of template slots belongs to the fixed held-out split (1 in `fraction`).

    Stable across processes and Python versions (crc32, not `hash`), so the model's training corpus
    and its model-card evaluation agree on what was never seen.
    """
    return zlib.crc32("|".join(map(str, parts)).encode()) % fraction == 0


@dataclass(frozen=True)
class TaskData:
    """A batch of tokenised prompt pairs; every tensor's first dimension is the example.

    clean, corrupted: [n, pos] token ids, right-padded (padding sits after `position`, so a causal
        model's reading at `position` never sees it).
    position: [n] the index whose next-token logits the metrics read.
    answers, distractors: [n, k] token ids; the masks mark real entries (rows are padded by
        repeating a real id, so gathers stay valid).
    """

    clean: Tensor
    corrupted: Tensor
    position: Tensor
    answers: Tensor
    answer_mask: Tensor
    distractors: Tensor
    distractor_mask: Tensor

    def __len__(self) -> int:
        return int(self.clean.shape[0])

    def to(self, device: torch.device | str) -> TaskData:
        return TaskData(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def subset(self, index: slice | Tensor) -> TaskData:
        """Examples `index`, trimmed to the longest remaining prompt."""
        picked = {f.name: getattr(self, f.name)[index] for f in fields(self)}
        width = int(picked["position"].max()) + 1 if picked["position"].numel() else 0
        picked["clean"] = picked["clean"][:, :width]
        picked["corrupted"] = picked["corrupted"][:, :width]
        return TaskData(**picked)

    def batches(self, batch_size: int) -> Iterator[TaskData]:
        for start in range(0, len(self), batch_size):
            yield self.subset(slice(start, start + batch_size))

    @property
    def max_token_id(self) -> int:
        return int(
            max(self.clean.max(), self.corrupted.max(), self.answers.max(), self.distractors.max())
        )


@dataclass(frozen=True)
class Task:
    """A named task with disjoint train / validation / test splits (disjoint by clean prompt)."""

    name: str
    train: TaskData
    val: TaskData
    test: TaskData
    seed: int
    source: dict = field(default_factory=dict)  # a task file's path, hash, format (TaskFile.record)
    test_examples: tuple[Example, ...] = ()  # the test prompts as written (per-prompt results)

    def to(self, device: torch.device | str) -> Task:
        return Task(
            self.name,
            self.train.to(device),
            self.val.to(device),
            self.test.to(device),
            self.seed,
            self.source,
            self.test_examples,
        )

    def record(self) -> dict:
        """What a result records about its data: the task file (if any) and the split sizes."""
        sizes = {"n_train": len(self.train), "n_val": len(self.val), "n_test": len(self.test)}
        return {**self.source, **sizes}


def _single_token_ids(
    tokenizer, strings: Sequence[str | int], where: Callable[[str | int], str] | None = None
) -> dict[str | int, int]:
    """Each answer string's single token id; a token id (an int) is kept where the tokenizer
    has it. `where` names the row of a refused answer (task files)."""
    ids: dict[str | int, int] = {}
    bad: list[str | int] = []
    size = len(tokenizer)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    for s in dict.fromkeys(strings):  # in the caller's order: the first bad one is named
        if isinstance(s, int):
            if 0 <= s < size and s not in special:
                ids[s] = s
            else:
                bad.append(s)
            continue
        toks = tokenizer(s, add_special_tokens=False)["input_ids"]
        if len(toks) != 1 or toks[0] == tokenizer.unk_token_id:
            bad.append(s)
        else:
            ids[s] = toks[0]
    if bad:
        first = f" (first in {where(bad[0])})" if where else ""
        raise TaskError(
            f"{len(bad)} answer(s) or distractor(s) are not single known tokens of this "
            f"tokenizer, e.g. {bad[:10]}{first}; pick words that are single tokens (or token ids "
            f"below {size} that are not special tokens) or use another model's tokenizer"
        )
    return ids


def _encode(
    tokenizer,
    texts: Sequence[str],
    prepend_bos: bool | None,
    rows: Sequence[int] | None = None,
    source: str = "task",
    unit: str = "row",
) -> list[list[int]]:
    if prepend_bos is None:
        prepend_bos = tokenizer.bos_token_id is not None
    if prepend_bos and tokenizer.bos_token_id is None:
        raise TaskError("prepend_bos=True but this tokenizer has no BOS token; pass False")
    bos = [tokenizer.bos_token_id] if prepend_bos else []
    encoded = [bos + ids for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    unk = tokenizer.unk_token_id
    if unk is not None:
        unknown: dict[str, int] = {}
        for i, (text, ids) in enumerate(zip(texts, encoded)):
            if unk not in ids:
                continue
            for word in text.split():
                word = word.strip(".,;:!?\"'()")
                if word and unk in tokenizer(word, add_special_tokens=False)["input_ids"]:
                    row = rows[i] if rows is not None else i + 1
                    unknown[word] = min(row, unknown.get(word, row))
        if unknown:
            first = min(unknown.items(), key=lambda item: item[1])
            raise TaskError(
                f"task/model vocabulary mismatch: words unknown to this tokenizer: "
                f"{sorted(unknown)[:20]} (first '{first[0]}' in {source} {unit} {first[1]}); use "
                "words the model knows or build the task with the model's own tokenizer"
            )
    return encoded


def _pad(rows: Sequence[Sequence[int]], pad: int) -> Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([list(r) + [pad] * (width - len(r)) for r in rows], dtype=torch.long)


def _pad_ids(rows: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([list(r) + [r[0]] * (width - len(r)) for r in rows], dtype=torch.long)
    mask = torch.tensor([[True] * len(r) + [False] * (width - len(r)) for r in rows])
    return ids, mask


def tokenize(
    examples: Sequence[Example],
    tokenizer,
    prepend_bos: bool | None = None,
    rows: Sequence[int] | None = None,
    source: str = "task",
    unit: str = "row",
) -> TaskData:
    """Tokenise examples for `tokenizer`. The BOS convention is explicit: `prepend_bos` True puts
    the tokenizer's BOS token first, False does not; None (the embedded model's and GPT-2's
    convention) prepends it when the tokenizer has one. Words are encoded without the
    tokenizer's own special tokens, so the convention is this argument alone. Prompts may differ
    in length from one another (right-padded; each is read at its own last token), but a clean
    prompt and its corrupted twin must have one length, since patching swaps activations
    position by position. `rows` / `source` / `unit` name a refused row (task files: the
    lowest-numbered one)."""
    rows = list(rows) if rows is not None else [i + 1 for i in range(len(examples))]
    clean = _encode(tokenizer, [e.clean for e in examples], prepend_bos, rows, source, unit)
    corrupted = _encode(tokenizer, [e.corrupted for e in examples], prepend_bos, rows, source, unit)
    mismatched = [i for i, (c, k) in enumerate(zip(clean, corrupted)) if len(c) != len(k)]
    if mismatched:
        i = min(mismatched, key=lambda j: rows[j])
        raise TaskError(
            f"{source}: {len(mismatched)} of {len(examples)} pairs have clean and corrupted "
            f"prompts of different token lengths, first {unit} {rows[i]} ({len(clean[i])} vs "
            f"{len(corrupted[i])} tokens: {examples[i].clean!r} / {examples[i].corrupted!r}); "
            "patching swaps activations position by position, so make each pair's words single "
            "tokens of this tokenizer or drop those rows"
        )
    first_row: dict[str | int, int] = {}
    for e, row in zip(examples, rows):
        for answer in e.answers + e.distractors:
            first_row[answer] = min(row, first_row.get(answer, row))
    ids = _single_token_ids(
        tokenizer,
        sorted(first_row, key=lambda a: first_row[a]),
        where=lambda a: f"{source} {unit} {first_row[a]}",
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    answers, answer_mask = _pad_ids([[ids[s] for s in e.answers] for e in examples])
    distractors, distractor_mask = _pad_ids([[ids[s] for s in e.distractors] for e in examples])
    return TaskData(
        clean=_pad(clean, pad or 0),
        corrupted=_pad(corrupted, pad or 0),
        position=torch.tensor([len(c) - 1 for c in clean], dtype=torch.long),
        answers=answers,
        answer_mask=answer_mask,
        distractors=distractors,
        distractor_mask=distractor_mask,
    )


def sample_examples(
    generator: Generator, n: int, seed: int, heldout: bool | None = None
) -> list[Example]:
    """`n` examples with distinct clean prompts, deterministic in `seed`."""
    rng = random.Random(seed)
    seen: dict[str, Example] = {}
    attempts = 0
    while len(seen) < n:
        example = generator(rng, heldout)
        seen.setdefault(example.clean, example)
        attempts += 1
        if attempts > 50 * n + 1000:
            raise TaskError(f"could only draw {len(seen)} distinct prompts of the {n} requested")
    return list(seen.values())


MAX_PROMPTS = 100_000  # prompts one task may draw in all: tokenised tensors stay ~100 MB


def check_split(
    name: str, n_train: int, n_val: int, n_test: int, capacity: int | None = None
) -> None:
    """Refuse, before any prompt is drawn, split sizes that are negative, that add up to more
    than MAX_PROMPTS, or to more than the `capacity` distinct prompts the task has (a TaskError
    naming the maximum; drawing more distinct prompts than exist would never end)."""
    sizes = {"n_train": n_train, "n_val": n_val, "n_test": n_test}
    bad = [f"{k}={v}" for k, v in sizes.items() if isinstance(v, bool) or not isinstance(v, int)]
    bad += [f"{k}={v}" for k, v in sizes.items() if isinstance(v, int) and v < 0]
    if bad:
        raise TaskError(f"{name}: split sizes must be whole numbers >= 0, got {', '.join(bad)}")
    total = n_train + n_val + n_test
    asked = f"n_train + n_val + n_test = {total:,} prompts"
    if total > MAX_PROMPTS:
        raise TaskError(
            f"{name}: {asked} asked for; a task draws at most {MAX_PROMPTS:,} in all "
            "(lower --n-train / --n-val / --n-test)"
        )
    if capacity is not None and total > capacity:
        raise TaskError(
            f"{name}: {asked} asked for, but it has only {capacity:,} distinct prompts for this "
            "tokenizer (lower --n-train / --n-val / --n-test)"
        )


def build_task(
    name: str,
    generator: Generator,
    tokenizer,
    n_train: int,
    n_val: int,
    n_test: int,
    seed: int,
    prepend_bos: bool | None = None,
    capacity: int | None = None,
) -> Task:
    """Draw n_train + n_val + n_test distinct prompts from `seed` and split them in that order.
    `capacity`: how many distinct prompts `generator` can make, where known (`check_split`)."""
    check_split(name, n_train, n_val, n_test, capacity)
    examples = sample_examples(generator, n_train + n_val + n_test, seed)
    data = tokenize(examples, tokenizer, prepend_bos)
    bounds = (0, n_train, n_train + n_val, n_train + n_val + n_test)
    train, val, test = (data.subset(slice(a, b)) for a, b in zip(bounds, bounds[1:]))
    test_examples = tuple(examples[bounds[2] : bounds[3]])
    return Task(name, train, val, test, seed, test_examples=test_examples)


def check_vocabulary(data: TaskData, d_vocab: int) -> None:
    """Raise if the task's token ids do not exist in a model with `d_vocab` tokens."""
    if data.max_token_id >= d_vocab:
        raise TaskError(
            f"task/model vocabulary mismatch: token id {data.max_token_id} >= the model's "
            f"vocabulary size {d_vocab}; build the task with this model's tokenizer"
        )


def check_context(task: Task, n_ctx: int | None) -> None:
    """Refuse (one line) prompts longer than the model's context window: the position
    embedding has no row for them."""
    if not n_ctx:
        return
    longest = max(int(d.clean.shape[1]) for d in (task.train, task.val, task.test) if len(d))
    if longest > n_ctx:
        where = task.source.get("task_file", task.name)
        raise TaskError(
            f"{where}: prompts of up to {longest} tokens, but the model reads at most {n_ctx}; "
            "shorten the prompts or use a model with a longer context"
        )
