"""`hap draw`: a circuit file as a layered diagram."""

from __future__ import annotations

import argparse

from hap.cli import common, options


def add(commands) -> None:
    parser = commands.add_parser("draw", help="a circuit file as a layered diagram (PNG)")
    parser.add_argument("circuit", type=options.input_file)
    parser.add_argument("--roles", type=options.input_file, default=None, help="roles CSV")
    parser.add_argument("-o", "--output", type=options.output_file, required=True)
    parser.add_argument("--title", default=None)
    parser.add_argument(
        "--layout", default="grid", choices=["grid", "dot"], help="dot: Graphviz's, if installed"
    )
    common.flags(parser)


def run(args: argparse.Namespace) -> dict:
    from hap.analysis.draw import draw_circuits
    from hap.analysis.roles import read_roles
    from hap.io.formats import read_circuit

    circuit, graph = read_circuit(args.circuit)
    roles = read_roles(args.roles) if args.roles else None
    title = args.title or f"{circuit.method}: {circuit.n_edges} edges ({args.circuit.name})"
    path = draw_circuits([(title, circuit)], graph, args.output, roles, args.layout)
    return {"circuit": str(args.circuit), "output": str(path), "n_edges": circuit.n_edges}
