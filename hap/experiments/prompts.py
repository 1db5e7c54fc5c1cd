"""Per-prompt results: one CSV row per test prompt, so a researcher can see which prompts a
circuit gets right, not only the split's mean."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from hap.engine.evaluate import PerPrompt
from hap.io.atomic import atomic_write
from hap.tasks.base import Example, TaskData

COLUMNS = [
    "prompt",
    "answers",
    "distractors",
    "full_logit_diff",
    "circuit_logit_diff",
    "empty_logit_diff",
    "circuit_kl",
    "circuit_prob_diff",
    "circuit_logprob",
    "empty_kl",
    "full_correct",
    "circuit_correct",
    "empty_correct",
]


def prompt_rows(
    tokenizer, data: TaskData, figures: PerPrompt, examples: Sequence[Example] = ()
) -> list[dict]:
    """Each test prompt, its answers and its figures. `examples`: the prompts as written
    (`Task.test_examples`); without them the tokens are decoded (a word-level tokenizer then
    spaces out punctuation)."""

    def words(ids, mask) -> str:
        return "|".join(tokenizer.decode([int(i)]) for i, m in zip(ids, mask) if m)

    def text(answers) -> str:
        return "|".join(a if isinstance(a, str) else tokenizer.decode([a]) for a in answers)

    rows = []
    for i in range(len(data)):
        if i < len(examples):
            prompt = examples[i].clean
            answers, distractors = text(examples[i].answers), text(examples[i].distractors)
        else:
            ids = data.clean[i, : int(data.position[i]) + 1].tolist()
            prompt = tokenizer.decode(ids, skip_special_tokens=True)
            answers = words(data.answers[i], data.answer_mask[i])
            distractors = words(data.distractors[i], data.distractor_mask[i])
        rows.append(
            {
                "prompt": prompt,
                "answers": answers,
                "distractors": distractors,
                "full_logit_diff": float(figures.full_logit_diff[i]),
                "circuit_logit_diff": float(figures.logit_diff[i]),
                "empty_logit_diff": float(figures.empty_logit_diff[i]),
                "circuit_kl": float(figures.kl[i]),
                "empty_kl": float(figures.empty_kl[i]),
                "circuit_prob_diff": float(figures.prob_diff[i]),
                "circuit_logprob": float(figures.logprob[i]),
                "full_correct": bool(figures.full_correct[i]),
                "circuit_correct": bool(figures.correct[i]),
                "empty_correct": bool(figures.empty_correct[i]),
            }
        )
    return rows


def write_prompt_rows(path: Path, rows: list[dict]) -> None:
    """The rows as CSV, written atomically (a failed write leaves no half file)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    data = buffer.getvalue().encode()
    atomic_write(Path(path), lambda handle: handle.write(data))
