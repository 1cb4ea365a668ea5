"""``pairlab`` command line: ``train | eval | compare | bench | plot | list``.

Each sub-command lives in its own module, which exposes ``register(app)``; this file only wires them
and turns bad input (ValueError, TypeError, FileNotFoundError) into one message and exit code 2.
"""

from __future__ import annotations

import importlib
import json
import sys

import typer

app = typer.Typer(
    name="pairlab",
    help="Contrastive learning where the pair is the first-class object.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

@app.callback()
def _root() -> None:
    """Contrastive learning where the pair is the first-class object."""


# modules that add commands with `register(app)`
COMMAND_MODULES: list[str] = ["pairlab.train.cli", "pairlab.bench.cli", "pairlab.hardness", "pairlab.compare.cli",
                             "pairlab.domains", "pairlab.report.html", "pairlab.report.overlay"]


@app.command("list")
def list_components(
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    kind: str = typer.Option(None, "--kind", help="Only this kind (objectives, candidates, ...)."),
) -> None:
    """List every registered component by kind."""
    from pairlab import registry

    data = registry.as_json()
    if kind is not None:
        if kind not in data:
            raise ValueError(f"--kind must be one of {list(data)}, got {kind!r}")
        data = {kind: data[kind]}
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("kind", "name", "summary")
    for k, entries in data.items():
        for e in entries:
            table.add_row(k, e["name"], e["summary"])
    Console().print(table)


for _mod in COMMAND_MODULES:
    importlib.import_module(_mod).register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app; user errors print one line and exit with code 2."""
    try:
        app(args=argv, standalone_mode=False)
    except (ValueError, TypeError, FileNotFoundError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"pairlab: error: {msg}", file=sys.stderr)
        return 2
    except SystemExit as e:  # typer/click exits (usage errors are code 2 already)
        return int(e.code or 0)
    except Exception as e:  # click usage errors (typer vendors click; match by interface)
        if hasattr(e, "show") and hasattr(e, "exit_code"):
            e.show()
            return int(e.exit_code)
        if type(e).__name__ == "Abort":
            return 130
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
