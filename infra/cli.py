"""platformctl: the offline face of the Pulumi program."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from infra.stack_file import ConfigError, display_path, stack_file_path

if TYPE_CHECKING:
    from infra.config import StackConfig

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Offline tools for the GPU inference platform.")

StackOption = typer.Option(..., "--stack", "-s", help="Stack name (stacks/Pulumi.<stack>.yaml).")
StackFileOption = typer.Option(None, "--stack-file", help="Preview a stack file that lives anywhere.")


@app.callback()
def _root() -> None:
    """Offline tools for the GPU inference platform: preview, policy checks, chargeback, usage, tenants, preflight."""


def _config_error(exc: ConfigError) -> typer.Exit:
    for problem in exc.problems:
        # Plain text, never wrapped: editors and CI annotate `file: message` lines.
        typer.echo(f"error: {exc.source}: {problem}", err=True)
    return typer.Exit(2)


def _load_stack(stack: str, stack_file: Path | None) -> tuple[Path, dict[str, Any], StackConfig]:
    """The stack file's (path, raw values, config); a ConfigError is exit 2 with its problems."""
    from infra.preview.runner import load

    try:
        return load(stack, stack_file)
    except ConfigError as exc:
        raise _config_error(exc) from None


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
    since: str | None = typer.Option(
        None, "--since", help="Window length: 90m, 12h, 30d, 4w (default 30d; at most 31d)."
    ),
    end: str | None = typer.Option(None, "--end", help="Window end, ISO 8601 (default: now, to the minute)."),
    month: str | None = typer.Option(
        None, "--month", help="A calendar month in UTC, YYYY-MM (instead of --since/--end)."
    ),
    by: str = typer.Option("tenant", "--by", help="tenant or cost-center"),
    fmt: str = typer.Option("table", "--format", help="table, csv or json"),
    stack: str = typer.Option("kind", "--stack", "-s", help="Stack whose price table and tiers apply."),
    stack_file: Path | None = StackFileOption,
) -> None:
    """Per-tenant (or per-cost-center) GPU-hours, tokens and cost over a window, priced from the stack."""
    from infra.chargeback import ChargebackError, check_retention, collect, render, resolve_window
    from infra.preview.runner import load
    from infra.prometheus_api import PrometheusAPI, PrometheusError

    with _bad_input_is_exit_2(stack, stack_file):
        _, _, config = load(stack, stack_file)
    pricing = config.monitoring.pricing
    tenants = {t.name: (t.tier, t.cost_center or t.name) for t in config.tenants}
    try:
        window = resolve_window(since, end, month)
        render([], fmt, pricing.currency, window, by)  # bad --format/--by fail before Prometheus is asked
        with PrometheusAPI(prometheus) as api:
            check_retention(api, window, config.monitoring.retention)
            rows = collect(api, window, pricing, tenants)
        typer.echo(render(rows, fmt, pricing.currency, window, by))
    except ChargebackError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2 if exc.usage else 1) from None
    except PrometheusError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def usage(
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant."),
    prometheus: str | None = typer.Option(
        None, "--prometheus", help="Prometheus base URL (kube-state-metrics, DCGM, tokens)."
    ),
    kubeconfig: Path | None = typer.Option(
        None, "--kubeconfig", help="Read ResourceQuota status from the API server instead."
    ),
    context: str | None = typer.Option(None, "--context", help="kubeconfig context (default: its current-context)."),
    since: str = typer.Option("1h", "--since", help="Window for the tokens column (Prometheus only)."),
    at: str | None = typer.Option(None, "--at", help="As of this time, ISO 8601 (Prometheus only; default now)."),
    as_json: bool = typer.Option(False, "--json", help="JSON for scripts instead of a table."),
    stack: str = typer.Option("kind", "--stack", "-s", help="Stack whose tenants and capacity apply."),
    stack_file: Path | None = StackFileOption,
) -> None:
    """Per tenant and namespace: requests, limits, GPUs and pods in use against quota, GPU utilisation, share."""
    from infra import usage as report
    from infra.chargeback import ChargebackError, resolve_window, window_seconds
    from infra.kube_client import KubeconfigError, KubeError, load_kubeconfig, quota_status, resource_quotas
    from infra.prometheus_api import PrometheusAPI, PrometheusError

    _, _, config = _load_stack(stack, stack_file)
    if (prometheus is None) == (kubeconfig is None):
        typer.echo("error: give exactly one of --prometheus URL or --kubeconfig FILE", err=True)
        raise typer.Exit(2)
    try:
        window_seconds(since)
        when = resolve_window("1m", at).end.timestamp() if at else None
        if at and kubeconfig is not None:
            raise ValueError("--at: the API server only knows the present; use --prometheus")
        tenants = report.tenants_of(config, tenant)
    except (ChargebackError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        if prometheus is not None:
            with PrometheusAPI(prometheus) as api:
                rows = report.from_prometheus(api, tenants, since, when)
            source = f"prometheus {prometheus}"
        else:
            cluster = load_kubeconfig(kubeconfig, context)
            namespaces = [ns for _, spaces in tenants.values() for ns in spaces]
            quotas = {ns: quota_status(items) for ns, items in resource_quotas(cluster, namespaces).items()}
            rows = report.from_quotas(quotas, tenants)
            source = f"kubernetes {cluster.server}"
    except KubeconfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KubeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except PrometheusError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(report.as_json(rows, config, source, since) if as_json else report.as_table(rows, config))


tenant_app = typer.Typer(no_args_is_help=True, help="Add, remove, list and show the tenants of a stack file.")
app.add_typer(tenant_app, name="tenant")
YesOption = typer.Option(False, "--yes", "-y", help="Write without asking.")


def _stack_name(stack: str, stack_file: Path | None) -> str:
    if stack_file is not None and stack_file.name.startswith("Pulumi.") and stack_file.suffix == ".yaml":
        return stack_file.name[len("Pulumi.") : -len(".yaml")]
    return stack


def _apply(edit, stack: str, stack_file: Path | None, yes: bool) -> None:
    from infra.tenant_plan import plan_lines

    typer.echo(edit.diff(), nl=False)
    for line in plan_lines(edit.config):
        typer.echo(line)
    if not yes and not typer.confirm(f"Write {edit.source}?", default=False):
        typer.echo("nothing written", err=True)
        raise typer.Exit(1)
    edit.write()
    typer.echo(
        f"wrote {edit.source}; next: pulumi preview -s {_stack_name(stack, stack_file)} && pulumi up -s {_stack_name(stack, stack_file)}"
    )


def _edit_errors(source: str, problems: list[str]) -> typer.Exit:
    for problem in problems:
        typer.echo(f"error: {source}: {problem} (file not changed)", err=True)
    return typer.Exit(2)


@tenant_app.command("add")
def tenant_add(
    name: str = typer.Argument(..., help="Tenant name (a DNS label); its prod namespace has this name."),
    tier: str = typer.Option(..., "--tier", help="gold, silver, bronze or a tier of the stack's `tiers`."),
    cost_center: str | None = typer.Option(None, "--cost-center", help="Label for chargeback --by cost-center."),
    environments: list[str] = typer.Option([], "--env", help="An environment (repeat; default prod)."),
    models: list[str] = typer.Option([], "--model", help="A model the tenant may call (repeat)."),
    api_keys: list[str] = typer.Option([], "--api-key", help="An API key id (repeat; default primary)."),
    yes: bool = YesOption,
    stack: str = typer.Option("kind", "--stack", "-s", help="Stack to edit (stacks/Pulumi.<stack>.yaml)."),
    stack_file: Path | None = StackFileOption,
) -> None:
    """Add a tenant: shows the diff and the resulting plan, then writes the stack file."""
    from infra import tenant_edit
    from infra.stack_file import stack_file_path

    path = stack_file or stack_file_path(stack)
    entry = tenant_edit.tenant_entry(name, tier, cost_center, environments, models, api_keys)
    try:
        edit = tenant_edit.add(path, entry)
    except ConfigError as exc:
        raise _edit_errors(exc.source, exc.problems) from None
    problems = tenant_edit.share_problems(edit.config)
    if problems:
        raise _edit_errors(edit.source, problems)
    _apply(edit, stack, stack_file, yes)


@tenant_app.command("remove")
def tenant_remove(
    name: str = typer.Argument(..., help="The tenant to remove."),
    yes: bool = YesOption,
    stack: str = typer.Option("kind", "--stack", "-s", help="Stack to edit (stacks/Pulumi.<stack>.yaml)."),
    stack_file: Path | None = StackFileOption,
) -> None:
    """Remove a tenant: says what `pulumi up` will delete, shows the diff, then writes the stack file."""
    from infra import tenant_edit
    from infra.stack_file import stack_file_path
    from infra.tenant_plan import removal_warning

    path = stack_file or stack_file_path(stack)
    try:
        edit, tenant = tenant_edit.remove(path, name)
    except ConfigError as exc:
        raise _edit_errors(exc.source, exc.problems) from None
    for line in removal_warning(tenant, _stack_name(stack, stack_file)):
        typer.echo(line, err=True)
    _apply(edit, stack, stack_file, yes)


@tenant_app.command("list")
def tenant_list(stack: str = typer.Option("kind", "--stack", "-s"), stack_file: Path | None = StackFileOption) -> None:
    """The stack's tenants: tier, cost center, namespaces, share of the cluster, API key ids."""
    from infra.tenant_plan import plan_lines

    _, _, config = _load_stack(stack, stack_file)
    for line in plan_lines(config):
        typer.echo(line)


@tenant_app.command("show")
def tenant_show(
    name: str = typer.Argument(...),
    stack: str = typer.Option("kind", "--stack", "-s"),
    stack_file: Path | None = StackFileOption,
) -> None:
    """One tenant as the program sees it: tier defaults merged, quota, gateway limits, workers, keys."""
    from infra.tenant_plan import show_lines

    _, _, config = _load_stack(stack, stack_file)
    tenant = next((t for t in config.tenants if t.name == name), None)
    if tenant is None:
        typer.echo(
            f"error: tenants: no tenant named {name!r} (tenants: {', '.join(t.name for t in config.tenants)})", err=True
        )
        raise typer.Exit(2)
    for line in show_lines(config, tenant):
        typer.echo(line)


@app.command()
def preflight(
    stack: str = StackOption,
    stack_file: Path | None = StackFileOption,
    region: str | None = typer.Option(None, "--region", help="AWS region (default: the stack's aws:region)."),
    kubeconfig: Path | None = typer.Option(
        None, "--kubeconfig", help="Check the cluster instead: nodes, StorageClass, Gateway API CRDs, IngressClass."
    ),
    context: str | None = typer.Option(None, "--context", help="kubeconfig context (default: its current-context)."),
) -> None:
    """Before `pulumi up`: check with AWS (EKS pools) or with the cluster (--kubeconfig) what the stack assumes."""
    from infra.preflight import AwsRefused, BotoCoreError, check_region, region_of
    from infra.preflight import preflight as run_preflight
    from infra.preview.runner import load

    source = _source(stack, stack_file)
    with _bad_input_is_exit_2(stack, stack_file):
        _, raw, config = load(stack, stack_file)
        if kubeconfig is not None:
            _cluster_preflight(config, kubeconfig, context)
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


def _cluster_preflight(config, kubeconfig: Path, context: str | None) -> None:
    from infra.cluster_preflight import cluster_problems
    from infra.kube_client import KubeError, load_kubeconfig

    try:
        problems = cluster_problems(config, load_kubeconfig(kubeconfig, context))
    except KubeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for problem in problems:
        typer.echo(f"problem: {problem}", err=True)
    if not problems:
        typer.echo("cluster ready for pulumi up: nodes, storage and exposure as the stack expects")
    raise typer.Exit(1 if problems else 0)


@app.command()
def images(stack: str = StackOption, stack_file: Path | None = StackFileOption) -> None:
    """The platform's own images for a stack: `<name> <Dockerfile> <image reference>`, one per line.

    `make images` builds exactly these references, so what is built is what the manifests pull.
    """
    from infra.config.platform import PLATFORM_IMAGES
    from infra.preview.runner import load

    with _bad_input_is_exit_2(stack, stack_file):
        _, _, config = load(stack, stack_file)
    for name, reference in config.images.platform_images().items():
        typer.echo(f"{name} {PLATFORM_IMAGES[name]} {reference}")


def main() -> None:  # console entry point
    app(prog_name="platformctl")


if __name__ == "__main__":
    sys.exit(main())
