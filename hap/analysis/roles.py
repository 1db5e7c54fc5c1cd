"""IOI head roles found by measurement (Wang et al. 2022's taxonomy), with the evidence per head.

Every score is measured on IOI prompts (the validation split), at the prompt's name positions:
IO, S1 (the subject's first mention), S2 (its second) and END (the metric position). Attention
patterns come from `blocks.{L}.attn.hook_pattern`.

- previous-token: mean attention from each position to the one before it.
- duplicate-token: attention from S2 to S1 (the earlier copy of the same name).
- induction: attention from S2 to the token after S1.
- name mover: attention from END to IO, and the head's direct effect: how much the logit
  difference drops when only the edge head -> logits is patched (hap.analysis.exact; the OV path's
  contribution, measured by intervention, not read off the weights).
- negative name mover: attends END -> IO with a negative direct effect.
- S-inhibition: patching only the head's edges into the name movers' queries (path patching with
  the corrupted run's output) changes the name movers' attention from END to S2; a head whose
  output lowers that attention has a positive score (removing it raises attention to S).
- S-attention: attends from END to S2. Not one of Wang et al.'s classes: on a model where no
  head passes the S-inhibition test (the default model's name movers sit in layer 1, and no
  layer-0 head moves their attention), these are the heads that carry S's identity to the
  metric position, the S-inhibition-like components the case study tracks.

A head takes every role whose thresholds it passes (THRESHOLDS; stated in the README). The
thresholds are fixed numbers chosen from the spread of the scores on this model, not fitted to
any method's circuits.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
from torch import Tensor

from hap.engine.ablation import compute_baseline
from hap.engine.graph import Graph
from hap.engine.patching import EdgeMaskedForward
from hap.tasks.base import TaskData

THRESHOLDS = {
    "previous_token": 0.4,  # mean attention to the previous position
    "duplicate_token": 0.3,  # attention S2 -> S1
    "induction": 0.3,  # attention S2 -> S1 + 1
    "name_mover_attention": 0.3,  # attention END -> IO
    "name_mover_effect": 0.3,  # logits of logit difference through the head's direct path
    "s_inhibition": 0.05,  # rise of the name movers' attention END -> S2 when removed
    "s_attention": 0.5,  # attention END -> S2
}
ROLE_ORDER = (
    "name mover",
    "negative name mover",
    "s-inhibition",
    "s-attention",
    "induction",
    "duplicate-token",
    "previous-token",
)


@dataclass(frozen=True)
class IOIPositions:
    """[n] token positions of each prompt's IO, S1, S2 and END."""

    io: Tensor
    s1: Tensor
    s2: Tensor
    end: Tensor


def ioi_positions(data: TaskData) -> IOIPositions:
    """Where the names sit, found from the tokens: IO is the answer token, S the distractor; S1
    and S2 are the first and last occurrences of S before END."""
    tokens = data.clean
    width = torch.arange(tokens.shape[1], device=tokens.device)
    before_end = width[None, :] < data.position[:, None]
    is_io = (tokens == data.answers[:, :1]) & before_end
    is_s = (tokens == data.distractors[:, :1]) & before_end
    if not (is_io.any(1).all() and (is_s.sum(1) >= 2).all()):
        raise ValueError("every IOI prompt needs its IO once and S twice before the end")
    big = tokens.shape[1]
    io = torch.where(is_io, width, big).amin(1)
    s1 = torch.where(is_s, width, big).amin(1)
    s2 = torch.where(is_s, width, -1).amax(1)
    return IOIPositions(io, s1, s2, data.position)


@torch.no_grad()
def attention_patterns(model, tokens: Tensor, fwd_hooks: list | None = None) -> Tensor:
    """[layers, batch, heads, query, key] attention patterns of a forward (with `fwd_hooks`)."""
    store: dict[int, Tensor] = {}

    def keep(value: Tensor, hook, layer: int) -> Tensor:
        store[layer] = value.detach()
        return value

    n_layers = model.cfg.n_layers
    hooks = [(f"blocks.{i}.attn.hook_pattern", partial(keep, layer=i)) for i in range(n_layers)]
    model.run_with_hooks(tokens, fwd_hooks=(fwd_hooks or []) + hooks)
    return torch.stack([store[i] for i in range(n_layers)])


def _at(patterns: Tensor, query: Tensor, key: Tensor) -> Tensor:
    """[layers, heads]: mean over examples of patterns[:, i, :, query[i], key[i]]."""
    rows = torch.arange(patterns.shape[1], device=patterns.device)
    return patterns[:, rows, :, query, key].mean(0)  # advanced indices first: [n, layers, heads]


def pattern_scores(model, data: TaskData) -> dict[str, Tensor]:
    """[layers, heads] previous-token, duplicate-token and induction scores, and attention from
    END to IO and to S2, on `data`'s clean prompts."""
    pos = ioi_positions(data)
    patterns = attention_patterns(model, data.clean)
    width = patterns.shape[-1]
    previous = torch.diagonal(patterns, offset=-1, dim1=-2, dim2=-1)  # [L, b, H, width - 1]
    queries = torch.arange(1, width, device=data.clean.device)
    valid = (queries[None, :] <= data.position[:, None]).to(previous.dtype)  # [b, width - 1]
    prev = (previous * valid[None, :, None, :]).sum((1, 3)) / valid.sum()
    return {
        "previous_token": prev,
        "duplicate_token": _at(patterns, pos.s2, pos.s1),
        "induction": _at(patterns, pos.s2, pos.s1 + 1),
        "end_to_io": _at(patterns, pos.end, pos.io),
        "end_to_s": _at(patterns, pos.end, pos.s2),
    }


def direct_effects(graph: Graph, d_logit_diff: Tensor) -> Tensor:
    """[layers, heads]: -d_logit_diff of each head's edge into the logits (hap.analysis.exact), the
    logit difference its direct path carries."""
    index = graph.edge_index
    return torch.tensor(
        [
            [-float(d_logit_diff[index[f"a{i}.h{h}->logits"]]) for h in range(graph.n_heads)]
            for i in range(graph.n_layers)
        ]
    )


@torch.no_grad()
def s_inhibition_scores(
    model, graph: Graph, data: TaskData, name_movers: list[tuple[int, int]]
) -> Tensor:
    """[layers, heads]: for each head before the first name mover's layer, the change in the
    name movers' mean attention END -> S2 when only that head's edges into their queries carry
    the corrupted run (path patching); 0 where no name mover is downstream."""
    scores = torch.zeros(graph.n_layers, graph.n_heads)
    if not name_movers:
        return scores
    pos = ioi_positions(data)
    baseline = compute_baseline(model, graph, data.clean, data.corrupted)
    forward = EdgeMaskedForward(model, graph)
    index = graph.edge_index

    def attention_to_s(mask: Tensor) -> float:
        patterns = attention_patterns(model, data.clean, forward.hooks(mask, baseline))
        at = _at(patterns, pos.end, pos.s2)
        return float(torch.stack([at[i, h] for i, h in name_movers]).mean())

    ones = torch.ones(graph.n_edges, device=data.clean.device)
    clean = attention_to_s(ones)
    first = min(i for i, _ in name_movers)
    for layer in range(first):
        for head in range(graph.n_heads):
            mask = ones.clone()
            for i, h in name_movers:
                mask[index[f"a{layer}.h{head}->a{i}.h{h}<q>"]] = 0.0
            scores[layer, head] = attention_to_s(mask) - clean
    return scores


@dataclass(frozen=True)
class HeadRole:
    head: str
    roles: str  # "; "-joined, in ROLE_ORDER, or "" for none
    previous_token: float
    duplicate_token: float
    induction: float
    end_to_io: float
    end_to_s: float
    direct_effect: float
    s_inhibition: float


def find_roles(model, graph: Graph, data: TaskData, d_logit_diff: Tensor) -> list[HeadRole]:
    """Every head's scores and the roles they pass (module docstring). `d_logit_diff`: the
    exact per-edge effects on the same split (hap.analysis.exact)."""
    t = THRESHOLDS
    scores = pattern_scores(model, data)
    direct = direct_effects(graph, d_logit_diff)
    attends_io = scores["end_to_io"] >= t["name_mover_attention"]
    movers = attends_io & (direct >= t["name_mover_effect"])
    negative = attends_io & (direct <= -t["name_mover_effect"])
    name_movers = [tuple(x) for x in movers.nonzero().tolist()]
    inhibition = s_inhibition_scores(model, graph, data, name_movers)
    flags = {
        "name mover": movers,
        "negative name mover": negative,
        "s-inhibition": inhibition >= t["s_inhibition"],
        "s-attention": scores["end_to_s"] >= t["s_attention"],
        "induction": scores["induction"] >= t["induction"],
        "duplicate-token": scores["duplicate_token"] >= t["duplicate_token"],
        "previous-token": scores["previous_token"] >= t["previous_token"],
    }
    rows = []
    for layer in range(graph.n_layers):
        for h in range(graph.n_heads):
            at = (layer, h)
            rows.append(
                HeadRole(
                    head=f"a{layer}.h{h}",
                    roles="; ".join(r for r in ROLE_ORDER if bool(flags[r][at])),
                    previous_token=float(scores["previous_token"][at]),
                    duplicate_token=float(scores["duplicate_token"][at]),
                    induction=float(scores["induction"][at]),
                    end_to_io=float(scores["end_to_io"][at]),
                    end_to_s=float(scores["end_to_s"][at]),
                    direct_effect=float(direct[at]),
                    s_inhibition=float(inhibition[at]),
                )
            )
    return rows


def write_roles(rows: list[HeadRole], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(row).items()}
            )


def read_roles(path: str | Path) -> dict[str, str]:
    """head name -> its first role (the one a diagram colours it by), from a roles CSV (the
    one `write_roles` writes: a `head` column, e.g. a1.h3, and a `roles` column, "; "-separated).
    A file that cannot be read, or lacks those columns, is a one-line UserError."""
    from hap.errors import UserError

    needed = ("head", "roles")
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            missing = [c for c in needed if c not in columns]
            if missing:
                raise UserError(
                    f"roles file {path} lacks the column(s) {', '.join(missing)}: a roles CSV "
                    f"needs columns {' and '.join(needed)} (as hap's case study writes them); "
                    f"it has {columns or 'no header'}"
                )
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        reason = getattr(error, "strerror", None) or str(error).split("\n")[0]
        raise UserError(f"roles file {path} cannot be read as CSV ({reason})") from error
    return {row["head"]: row["roles"].split("; ")[0] for row in rows if row["roles"]}


def heads_in_circuit(graph: Graph, mask: Tensor) -> set[str]:
    """Heads with a kept in-edge (into any of q, k, v) and a kept out-edge."""
    from hap.io.formats import node_in_graph

    flags = node_in_graph(graph, mask).tolist()
    return {name for name, kept in zip(graph.sender_names, flags) if kept and name[0] == "a"}
