"""`hap export`: a circuit file written in another format."""

from __future__ import annotations

import argparse

from hap.cli import common, options
from hap.io.formats import FORMATS


def add(commands) -> None:
    parser = commands.add_parser("export", help="write a circuit file in another format")
    parser.add_argument("circuit", type=options.input_file)
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("-o", "--output", type=options.output_file, required=True)
    common.flags(parser)


def run(args: argparse.Namespace) -> dict:
    from hap.io.formats import detect_format, read_circuit

    source = detect_format(args.circuit)
    circuit, graph = read_circuit(args.circuit)
    common.save_circuit(circuit, graph, args.output, args.format)
    return {
        "circuit": str(args.circuit),
        "from": source,
        "to": args.format,
        "output": str(args.output),
        "graph": graph.shape(),
        "n_edges": circuit.n_edges,
    }
