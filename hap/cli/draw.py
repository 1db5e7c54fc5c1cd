"""`hap draw`: a circuit file as a layered diagram."""

from __future__ import annotations

import argparse

from hap.cli import common, options
from hap.errors import UserError


def add(commands) -> None:
    parser = commands.add_parser("draw", help="a circuit file as a layered diagram (PNG)")
    parser.add_argument("circuit", type=options.input_file)
    parser.add_argument("--roles", type=options.input_file, default=None, help="roles CSV")
    parser.add_argument("-o", "--output", type=options.output_file, required=True)
    parser.add_argument("--title", default=None)
    parser.add_argument(
        "--layout", default="grid", choices=["grid", "dot"], help="dot: Graphviz's, if installed"
    )
    parser.add_argument(
        "--view",
        default="edges",
        choices=["edges", "nodes"],
        help="edges: every kept edge, q/k/v apart; nodes: one bundle per node pair, weighted by "
        "its kept edges (readable at hundreds of edges)",
    )
    parser.add_argument(
        "--top",
        type=options.positive_int,
        default=None,
        help="node view: draw only the N heaviest bundles",
    )
    common.flags(parser)


def run(args: argparse.Namespace) -> dict:
    from hap.analysis.draw import draw_circuits
    from hap.analysis.roles import read_roles
    from hap.io.formats import read_circuit

    circuit, graph = read_circuit(args.circuit)
    roles = read_roles(args.roles) if args.roles else None
    title = args.title or f"{circuit.method}: {circuit.n_edges} edges ({args.circuit.name})"
    if args.top and args.view != "nodes":
        raise UserError("--top applies to the node view: add --view nodes")
    path = draw_circuits(
        [(title, circuit)], graph, args.output, roles, args.layout, view=args.view, top=args.top
    )
    return {"circuit": str(args.circuit), "output": str(path), "n_edges": circuit.n_edges}
