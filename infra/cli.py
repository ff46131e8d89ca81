"""platformctl: the offline face of the Pulumi program."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from infra.stack_file import ConfigError, display_path, stack_file_path

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


def _source(stack: str, stack_file: Path | None) -> str:
    return display_path(stack_file) if stack_file is not None else display_path(stack_file_path(stack))


@contextmanager
def _bad_input_is_exit_2(stack: str, stack_file: Path | None) -> Iterator[None]:
    """Every failure on a stack is exit 2 with the file (and key, where known), never a traceback."""
    # Pulumi's stack names: the name also becomes a path under build/, so nothing that leaves it.
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", stack):
        typer.echo(f"error: --stack: {stack!r} is not a stack name (letters, digits, '.', '_' and '-')", err=True)
        raise typer.Exit(2)
    try:
        yield
    except ConfigError as exc:
        raise _config_error(exc) from None
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except RecursionError:
        typer.echo(f"error: {_source(stack, stack_file)}: values nest too deeply to be a stack configuration", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:  # noqa: BLE001 - the last line of defence: say what failed and where
        typer.echo(f"error: {_source(stack, stack_file)}: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def preview(
    stack: str = StackOption,
    stack_file: Path | None = StackFileOption,
    out: Path | None = typer.Option(None, "--out", help="Output folder (default build/<stack>/)."),
) -> None:
    """Run the program under Pulumi's mock runtime: manifests, schema check, report.json and the plan."""
    from infra.preview.runner import run_preview

    with _bad_input_is_exit_2(stack, stack_file):
        result = run_preview(stack, stack_file, out)
    raise typer.Exit(result.exit_code)


policy_app = typer.Typer(no_args_is_help=True, help="The CrossGuard policy pack, offline.")
app.add_typer(policy_app, name="policy")


@policy_app.command("check")
def policy_check(stack: str = StackOption, stack_file: Path | None = StackFileOption) -> None:
    """Run the policy pack's rules on the stack's resources; exit 1 on any mandatory violation."""
    from rich.console import Console

    from infra.preview import policy
    from infra.preview.runner import capture_stack, load, print_violations

    with _bad_input_is_exit_2(stack, stack_file):
        path, raw, _ = load(stack, stack_file)
        violations = policy.check(capture_stack(stack, raw, display_path(path)))
    print_violations(violations, Console(width=200))
    raise typer.Exit(1 if any(v["level"] == "mandatory" for v in violations) else 0)


@app.command()
def chargeback(
    prometheus: str = typer.Option(..., "--prometheus", help="Prometheus base URL, e.g. http://localhost:9090"),
    since: str = typer.Option("30d", "--since", help="Window: 90m, 12h, 30d, 4w"),
    fmt: str = typer.Option("table", "--format", help="table, csv or json"),
    stack: str = typer.Option("kind", "--stack", "-s", help="Stack whose price table and tiers apply."),
    stack_file: Path | None = StackFileOption,
) -> None:
    """Per-tenant GPU-hours, tokens and cost over a window, priced from the stack's monitoring.pricing."""
    from infra.chargeback import ChargebackError, collect, render
    from infra.preview.runner import load

    with _bad_input_is_exit_2(stack, stack_file):
        _, _, config = load(stack, stack_file)
    pricing = config.monitoring.pricing
    try:
        rows = collect(prometheus, since, pricing, {t.name: t.tier for t in config.tenants})
        typer.echo(render(rows, fmt, pricing.currency))
    except ChargebackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2 if "--" in str(exc) else 1) from None


@app.command()
def preflight(
    stack: str = StackOption,
    stack_file: Path | None = StackFileOption,
    region: str | None = typer.Option(None, "--region", help="AWS region (default: the stack's aws:region)."),
) -> None:
    """Check with AWS that the stack's EKS GPU instance type exists and is offered where configured."""
    from infra.preflight import AwsRefused, BotoCoreError, check_region, region_of
    from infra.preflight import preflight as run_preflight
    from infra.preview.runner import load

    source = _source(stack, stack_file)
    with _bad_input_is_exit_2(stack, stack_file):
        _, raw, config = load(stack, stack_file)
        region = region or region_of(raw)
        if not region:
            raise ConfigError(source, ["aws:region: no AWS region: pass --region or set aws:region in the stack file"])
        try:
            result = run_preflight(config, check_region(region))
        except ValueError as exc:
            raise ConfigError(source, [str(exc)]) from None
        except (BotoCoreError, AwsRefused) as exc:
            typer.echo(f"error: cannot check {source} with AWS in {region}: {exc}", err=True)
            raise typer.Exit(1) from None
    typer.echo(
        f"{result.instance_type} in {result.region}: {result.gpus_per_node} GPU(s) per node ({result.gpu_name or 'none'}), "
        f"offered in {', '.join(result.offered_zones) or 'no zone'}; pool capacity at max size "
        f"{result.max_nodes} nodes: {result.gpu_capacity} GPUs"
    )
    # What AWS says about the stack's keys is a problem of the stack file, like any other (exit 2).
    for problem in result.problems:
        typer.echo(f"error: {source}: {problem}", err=True)
    raise typer.Exit(0 if result.ok else 2)


def main() -> None:  # console entry point
    app(prog_name="platformctl")


if __name__ == "__main__":
    sys.exit(main())
