"""`platformctl preview`: run the program offline, write manifests and report.json, print the plan."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from infra import program
from infra.config import StackConfig
from infra.preview import gateway_readback, manifests, object_names, plan, policy, schema
from infra.preview.capture import Capture, run_under_mocks
from infra.stack_file import (
    STACKS_DIR,
    ConfigError,
    display_path,
    parse_stack_config,
    project_values,
    read_stack,
    stack_file_path,
)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


@dataclass
class PreviewResult:
    exit_code: int
    out_dir: Path
    config: StackConfig
    capture: Capture
    report: dict[str, Any] = field(default_factory=dict)


def default_out_dir(stack: str) -> Path:
    return STACKS_DIR.parent / "build" / stack


def load(stack: str, stack_file: Path | None) -> tuple[Path, dict[str, Any], StackConfig]:
    """Read and parse a stack; raises ConfigError (exit code 2 at the CLI)."""
    path = stack_file or stack_file_path(stack)
    read = read_stack(path)
    return path, read.config, parse_stack_config(project_values(read.config), read.source, read.document)


def capture_stack(stack: str, raw: dict[str, Any], source: str | None = None) -> Capture:
    """Run the program offline; any failure of the program on this stack is a ConfigError of `source`."""
    source = source or display_path(stack_file_path(stack))
    try:
        return run_under_mocks(program.main, stack=stack, config=raw)
    except ConfigError:
        raise
    except Exception as exc:  # the stack passed its checks but the program still failed on it
        raise ConfigError(source, [_program_failure(exc)]) from None


def _program_failure(exc: BaseException) -> str:
    """The first line that says what went wrong, without the SDK's wrapping or a traceback."""
    text = str(exc)
    for prefix in ("Program run without the Pulumi engine available; re-run using the `pulumi` CLI",):
        text = text.replace(prefix, "")
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith(("Traceback", "  File"))
    ]
    message = lines[-1] if lines else type(exc).__name__
    return message if ": " in message else f"the program failed on this stack: {message}"


def schema_check(docs: list[tuple[Path, dict]], out_dir: Path, version: str) -> tuple[list[dict], list[str]]:
    errors, unvalidated = [], []
    for path, doc in docs:
        where = str(path.relative_to(out_dir))
        try:
            problems = schema.validate(doc, version)
        except schema.SchemaNotFound:
            unvalidated.append(where)
            continue
        errors.extend({"manifest": where, "error": problem} for problem in problems)
    return errors, unvalidated


def inventory(capture: Capture) -> dict[str, Any]:
    custom = [r for r in capture.resources if r.custom]
    return {
        "total": len(custom),
        "byType": dict(sorted(Counter(r.type for r in custom).items())),
        "byComponent": dict(sorted(Counter(r.component or "(stack)" for r in custom).items())),
        "byTenant": dict(sorted(Counter(r.tenant for r in custom if r.tenant).items())),
    }


def print_violations(violations: list[dict[str, str]], console: Console) -> None:
    mandatory = sum(v["level"] == "mandatory" for v in violations)
    console.print(f"policy: {mandatory} mandatory, {len(violations) - mandatory} advisory violations")
    for v in violations:
        colour = "red" if v["level"] == "mandatory" else "yellow"
        console.print(f"[{colour}]{v['level']}[/] {v['policy']}: {v['message']}", highlight=False)


def run_preview(
    stack: str, stack_file: Path | None = None, out_dir: Path | None = None, console: Console | None = None
) -> PreviewResult:
    console = console or Console()
    path, raw, config = load(stack, stack_file)
    out_dir = (out_dir or default_out_dir(stack)).resolve()
    capture = capture_stack(stack, raw, display_path(path))
    refused = gateway_readback.problems(capture, config) + object_names.problems(capture)
    if refused:
        raise ConfigError(display_path(path), refused)

    for stale in ("manifests", "releases", "cloud"):
        shutil.rmtree(out_dir / stale, ignore_errors=True)
    docs = manifests.write(capture, out_dir)
    schema_errors, unvalidated = schema_check(docs, out_dir, config.platform.kubernetes_version)
    violations = policy.check(capture)
    the_plan = plan.tenant_plan(config, capture.outputs)
    failed = bool(schema_errors) or any(v["level"] == "mandatory" for v in violations)

    report = {
        "stack": stack,
        "stackFile": display_path(path),
        "resources": inventory(capture),
        "schema": {
            "kubernetesVersion": config.platform.kubernetes_version,
            "validated": len(docs) - len(unvalidated),
            "errors": schema_errors,
            "unvalidated": unvalidated,
        },
        "violations": violations,
        "plan": the_plan,
        "ok": not failed,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")

    plan.render(stack, the_plan, console)
    console.print(
        f"{report['resources']['total']} resources; {len(docs)} manifests written to "
        f"{display_path(out_dir / 'manifests')}; schema: {report['schema']['validated']} validated, "
        f"{len(schema_errors)} errors" + (f", {len(unvalidated)} without a schema" if unvalidated else "")
    )
    for error in schema_errors:
        console.print(f"[red]schema[/] {error['manifest']}: {error['error']}")
    print_violations(violations, console)
    console.print("[green]preview ok[/]" if not failed else "[red]preview failed[/]")
    return PreviewResult(EXIT_FAILED if failed else EXIT_OK, out_dir, config, capture, report)
