"""Train the embedded default model: a 4-layer GPT-2 with a word-level tokenizer.

Run `python -m hap.models.train` (about 7 minutes on 2 CPU cores). The corpus is synthetic: IOI sentences
from the Wang et al. templates in both name orders, Greater-Than and Gendered-Pronoun sentences, and
filler sentences over the same words, so the result is a small language model that happens to solve
the three tasks, not a classifier. Combinations in the fixed held-out split (`heldout_key`) never
appear in training; the model card reports quality measured on fresh prompts drawn from them.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from hap.engine import metrics
from hap.tasks import GENERATORS
from hap.tasks.base import sample_examples, tokenize
from hap.tasks.greater_than import YEARS
from hap.tasks.templates import FILLER_TEMPLATES
from hap.tasks.vocab import (
    ADJECTIVES,
    CENTURIES,
    EVENTS,
    JOBS,
    NAMES,
    OBJECTS,
    PLACES,
    VERBS,
)

DEFAULT_DIR = Path(__file__).parent / "assets" / "default"
BOS = "<|endoftext|>"
PAD = "<pad>"
UNK = "[UNK]"
# The corpus mix: which fraction of sentences comes from each source.
MIX = {"ioi": 0.45, "greater-than": 0.15, "gendered-pronoun": 0.15, "filler": 0.25}


@dataclass
class TrainConfig:
    seed: int = 0
    n_layer: int = 4
    n_head: int = 8
    n_embd: int = 128
    n_positions: int = 64
    steps: int = 3000
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 200
    weight_decay: float = 0.01
    threads: int = 2


def filler_sentence(rng: random.Random) -> str:
    obj, obj2 = rng.sample(OBJECTS, 2)
    adj, adj2 = rng.sample(ADJECTIVES, 2)
    return rng.choice(FILLER_TEMPLATES).format(
        NAME=rng.choice(NAMES),
        PLACE=rng.choice(PLACES),
        VERB=rng.choice(VERBS),
        ADJ=adj,
        ADJ2=adj2,
        OBJECT=obj,
        OBJECT2=obj2,
        JOB=rng.choice(JOBS),
        EVENT=rng.choice(EVENTS),
        CENTURY=rng.choice(CENTURIES),
        YY=rng.choice(YEARS),
    )


def corpus_sentence(rng: random.Random) -> str:
    """One training sentence: a task prompt completed by a correct answer, or filler."""
    source = rng.choices(list(MIX), weights=list(MIX.values()))[0]
    if source == "filler":
        return filler_sentence(rng)
    example = GENERATORS[source](rng, False)
    answer = rng.choice(example.answers)
    if source == "gendered-pronoun":
        return f"{example.clean}{answer} {rng.choice(VERBS)} a {rng.choice(OBJECTS)}."
    return example.clean + answer + "."


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer over every word the corpus can produce; years split into two digits."""
    rng = random.Random(1234)
    pre = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r"\d\d"), behavior="isolated"), pre_tokenizers.Whitespace()]
    )
    words: set[str] = set(YEARS)
    for _ in range(20000):
        words.update(w for w, _ in pre.pre_tokenize_str(corpus_sentence(rng)))
    for generator in GENERATORS.values():
        for example in sample_examples(generator, 300, seed=1, heldout=True):
            for text in (example.clean, example.corrupted):
                words.update(w for w, _ in pre.pre_tokenize_str(text))
    words.update(NAMES)
    vocab = {tok: i for i, tok in enumerate([BOS, PAD, UNK, *sorted(words)])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=BOS, pad_token=PAD, unk_token=UNK
    )


def batch(tokenizer: PreTrainedTokenizerFast, rng: random.Random, size: int) -> torch.Tensor:
    rows = [
        [tokenizer.bos_token_id] + ids + [tokenizer.eos_token_id]
        for ids in tokenizer([corpus_sentence(rng) for _ in range(size)], add_special_tokens=False)[
            "input_ids"
        ]
    ]
    width = max(map(len, rows))
    return torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])


@torch.no_grad()
def evaluate(model, tokenizer, n: int = 500, seed: int = 10_000) -> dict[str, dict[str, float]]:
    """Accuracy and logit difference per task on fresh prompts from the held-out combinations."""
    model.eval()
    report = {}
    for name, generator in GENERATORS.items():
        data = tokenize(sample_examples(generator, n, seed=seed, heldout=True), tokenizer)
        logits = metrics.at_position(model(data.clean).logits, data.position)
        report[name] = {
            "accuracy": metrics.accuracy(logits, data).mean().item(),
            "logit_diff": metrics.logit_diff(logits, data).mean().item(),
            "n": n,
        }
    return report


def train(config: TrainConfig, out_dir: Path) -> dict:
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = random.Random(config.seed)
    tokenizer = build_tokenizer()
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=config.n_positions,
            n_embd=config.n_embd,
            n_layer=config.n_layer,
            n_head=config.n_head,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )

    def lr_at(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    start = time.perf_counter()
    model.train()
    for step in range(config.steps):
        tokens = batch(tokenizer, rng, config.batch_size)
        labels = tokens.masked_fill(tokens == tokenizer.pad_token_id, -100)
        loss = model(tokens, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 250 == 0 or step == config.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  {time.perf_counter() - start:.0f}s")
    train_seconds = time.perf_counter() - start
    quality = evaluate(model, tokenizer)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    _portable_tokenizer_config(out_dir / "tokenizer_config.json")
    card = {
        "config": asdict(config),
        "train_seconds": round(train_seconds, 1),
        "torch": torch.__version__,
        "quality_heldout": quality,
    }
    (out_dir / "training.json").write_text(json.dumps(card, indent=2) + "\n")
    write_model_card(out_dir, card, sum(p.numel() for p in model.parameters()))
    return card


def _portable_tokenizer_config(path: Path) -> None:
    """Name the tokenizer class every transformers release knows, not the 5.x backend alias."""
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2) + "\n")


def write_model_card(out_dir: Path, card: dict, n_params: int) -> None:
    c, q = card["config"], card["quality_heldout"]
    rows = "\n".join(
        f"| {task} | {v['accuracy']:.1%} | {v['logit_diff']:.2f} | {v['n']} |"
        for task, v in q.items()
    )
    (out_dir / "MODEL_CARD.md").write_text(
        f"""# hap-bench default model

A GPT-2-architecture causal LM ({c["n_layer"]} layers, {c["n_head"]} heads, d_model {c["n_embd"]},
context {c["n_positions"]}, {n_params:,} parameters) with a word-level tokenizer, trained from scratch
by `python -m hap.models.train` (seed {c["seed"]}, {c["steps"]} steps of batch {c["batch_size"]},
AdamW lr {c["lr"]}, {c["threads"]} CPU threads, {card["train_seconds"]:.0f} s, torch {card["torch"]}).

Corpus: synthetic sentences -- IOI (15 Wang et al. templates, ABBA and BABA), Greater-Than,
Gendered-Pronoun, and filler over the same vocabulary. A fixed 10% of slot combinations (template,
names; event, century, year; template, name, job, place) is held out of training.

## Quality on fresh prompts from the held-out combinations

| task | accuracy | mean logit diff | prompts |
|---|---|---|---|
{rows}

Accuracy: the best answer token outscores every distractor. Logit diff: mean answer logit minus
mean distractor logit (IOI: IO - S; Greater-Than: later years - earlier years; Gendered-Pronoun:
right pronoun - wrong pronoun).
"""
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    args = parser.parse_args()
    card = train(TrainConfig(steps=args.steps, seed=args.seed), args.out)
    print(json.dumps(card["quality_heldout"], indent=2))


if __name__ == "__main__":
    main()
