"""``dcma info``: describe a saved model."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from dcma_jax.cli import args as flags
from dcma_jax.cli import steps


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Adds ``dcma info`` and its flags."""
    parser = commands.add_parser(
        "info",
        help="describe a saved model: roles, graph, generators, how it was fitted",
        description=(
            "Print the roles and encodings, the causal graph with the generator of each node, "
            "the training epochs and validation losses, the bootstrap and the settings a model "
            "saved by 'dcma fit --save DIR' was fitted with."
        ),
    )
    parser.add_argument(
        "--model", metavar="DIR", required=True, help="folder written by dcma fit --save"
    )
    flags.add_debug_flag(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace, out: steps.Out) -> None:
    """Runs ``dcma info``; ``out`` prints a line."""
    from dcma_jax.persistence import load

    fitted = load(args.model)
    model, report, settings = fitted.model, fitted.report, fitted.settings
    out(f"Model: {args.model}")
    out(fitted.data.summary())
    out("")
    out("Graph and generators:")
    for line, g, epochs, loss in zip(
        model.describe().splitlines(),
        model.generators,
        report.epochs,
        report.best_val_loss,
        strict=True,
    ):
        fields = {
            f.name: getattr(g, f.name)
            for f in dataclasses.fields(g)
            if f.init and f.name not in ("parent", "name")
        }
        how = "closed form" if epochs == 0 else f"{epochs} epochs, best validation loss {loss:.4f}"
        out(f"  {line}")
        out(
            f"      {type(g).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())}): {how}"
        )
    out("")
    if report.selection:
        out("\n".join([*steps.selection_lines(fitted.describe()["generator_selection"]), ""]))
    if fitted.bootstrap:
        out(f"Bootstrap: {fitted.bootstrap} replicates in blocks of {settings.block_size}")
        for node, epochs in zip(model.graph.nodes, report.replicate_epochs, strict=True):
            if any(epochs):
                e = np.asarray(epochs)
                out(f"  {node.name}: epochs median {np.median(e):g} (range {e.min()}-{e.max()})")
    else:
        out("Bootstrap: none (no intervals)")
    out("Fit diagnostics per node (PIT KS above its 95% bound: miscalibrated):")
    out("\n".join(steps.node_lines(fitted.diagnostics())))
    config = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(settings.config).items())
    out(f"Fitted with: seed {settings.seed}, link {settings.link}; training {config}")
    out(f"Fit time: {report.seconds:.1f} s")
