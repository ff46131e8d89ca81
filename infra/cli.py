"""platformctl: the offline face of the Pulumi program."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from infra.stack_file import ConfigError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Offline tools for the GPU inference platform.")

StackOption = typer.Option(..., "--stack", "-s", help="Stack name (stacks/Pulumi.<stack>.yaml).")
StackFileOption = typer.Option(None, "--stack-file", help="Preview a stack file that lives anywhere.")


@app.callback()
def _root() -> None:
    """Offline tools for the GPU inference platform: preview, policy checks, chargeback, preflight."""


def _config_error(exc: ConfigError) -> typer.Exit:
    for problem in exc.problems:
        # Plain text, never wrapped: editors and CI annotate `file: message` lines.
        typer.echo(f"error: {exc.source}: {problem}", err=True)
    return typer.Exit(2)


@app.command()
def preview(
    stack: str = StackOption,
    stack_file: Optional[Path] = StackFileOption,
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default build/<stack>/)."),
) -> None:
    """Run the program under Pulumi's mock runtime: manifests, schema check, report.json and the plan."""
    from infra.preview.runner import run_preview

    try:
        result = run_preview(stack, stack_file, out)
    except ConfigError as exc:
        raise _config_error(exc) from None
    raise typer.Exit(result.exit_code)


def main() -> None:  # console entry point
    app(prog_name="platformctl")


if __name__ == "__main__":
    sys.exit(main())
