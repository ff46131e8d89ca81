"""Editing the tenants of a stack file without losing its comments, order or quoting.

The file is read and written with ruamel.yaml's round-trip mode; every edit is validated through
the same `parse_stack_config` as `pulumi up` and the preview before anything is written, and the
file is replaced atomically, so a bad edit leaves it untouched.
"""

from __future__ import annotations

import difflib
import io
import os
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from infra.config import PROJECT, StackConfig, Tenant
from infra.stack_file import ConfigError, display_path, parse_stack_config, project_values

TENANTS_KEY = f"{PROJECT}:tenants"
# What the 30% rule and the quota shares are measured in (ResourceQuota key -> capacity key).
SHARED = {"cpu": "cpu", "cpu_limit": "cpu", "memory": "memory", "memory_limit": "memory", "gpu": "gpu"}


def _yaml() -> YAML:
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096  # never re-wrap a long line
    # The shipped stacks indent sequences under their key by two, items by four.
    rt.indent(mapping=2, sequence=4, offset=2)
    return rt


@dataclass
class Edit:
    path: Path
    before: str
    after: str
    config: StackConfig
    raw: dict[str, Any]

    @property
    def source(self) -> str:
        return display_path(self.path)

    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                self.before.splitlines(keepends=True),
                self.after.splitlines(keepends=True),
                fromfile=f"{self.source} (now)",
                tofile=f"{self.source} (after)",
            )
        )

    def write(self) -> None:
        # Same folder, then rename: a reader never sees half a file.
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(self.after)
            os.chmod(temp, self.path.stat().st_mode & 0o777)
            os.replace(temp, self.path)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise


def read(path: Path) -> tuple[str, Any]:
    source = display_path(path)
    if not path.is_file():
        raise ConfigError(source, ["stack file not found"])
    text = path.read_text()
    try:
        document = _yaml().load(text)
    except Exception as exc:  # ruamel raises several unrelated classes for bad YAML
        raise ConfigError(source, [f"not valid YAML: {exc}"]) from None
    if not isinstance(document, CommentedMap) or not isinstance(document.get("config"), CommentedMap):
        raise ConfigError(source, ["config: expected a mapping of `project:key` entries"])
    return text, document


def _tenants(document: Any, source: str, create: bool = False) -> CommentedSeq:
    config = document["config"]
    tenants = config.get(TENANTS_KEY)
    if tenants is None and create:
        tenants = config[TENANTS_KEY] = CommentedSeq()
    if isinstance(tenants, str):
        raise ConfigError(source, [f"{TENANTS_KEY}: stored as a JSON string; edit it by hand or rewrite it as YAML"])
    if not isinstance(tenants, CommentedSeq):
        raise ConfigError(source, [f"{TENANTS_KEY}: expected a list of tenants"])
    return tenants


def _validated(path: Path, before: str, document: Any) -> Edit:
    out = io.StringIO()
    _yaml().dump(document, out)
    after = out.getvalue()
    raw = yaml.safe_load(after)["config"]
    config = parse_stack_config(project_values(raw), display_path(path))
    return Edit(path, before, after, config, raw)


def tenant_entry(
    name: str,
    tier: str,
    cost_center: str | None = None,
    environments: list[str] | None = None,
    models: list[str] | None = None,
    api_keys: list[str] | None = None,
) -> CommentedMap:
    """A new tenant as it will appear in the file: only what was given, in the README's order."""
    entry = CommentedMap()
    entry["name"] = name
    entry["tier"] = tier
    if cost_center:
        entry["costCenter"] = cost_center
    for key, values in (("environments", environments), ("models", models), ("apiKeys", api_keys)):
        if values:
            seq = CommentedSeq(values)
            seq.fa.set_flow_style()
            entry[key] = seq
    return entry


def add(path: Path, entry: CommentedMap) -> Edit:
    before, document = read(path)
    source = display_path(path)
    tenants = _tenants(document, source, create=True)
    names = [t.get("name") for t in tenants if isinstance(t, dict)]
    if entry["name"] in names:
        raise ConfigError(source, [f"tenants[{names.index(entry['name'])}].name: tenant {entry['name']!r} exists"])
    tenants.append(entry)
    return _validated(path, before, document)


def remove(path: Path, name: str) -> tuple[Edit, Tenant]:
    before, document = read(path)
    source = display_path(path)
    tenants = _tenants(document, source)
    names = [t.get("name") if isinstance(t, dict) else None for t in tenants]
    if name not in names:
        raise ConfigError(source, [f"tenants: no tenant named {name!r} (tenants: {', '.join(map(str, names))})"])
    old = parse_stack_config(project_values(yaml.safe_load(before)["config"]), source)
    tenant = next(t for t in old.tenants if t.name == name)
    del tenants[names.index(name)]
    return _validated(path, before, document), tenant


def shares(config: StackConfig, tenant: Tenant) -> dict[str, Decimal]:
    """The tenant's quota summed over its namespaces, as a fraction of the declared capacity."""
    quota = config.tenant_quota(tenant)
    capacity = config.platform.capacity
    totals = {"cpu": capacity.cpu, "memory": capacity.memory, "gpu": Decimal(capacity.gpu)}
    result = {}
    for key, over in SHARED.items():
        amount = getattr(quota, key)
        if amount is not None and totals[over]:
            result[key] = Decimal(amount) * len(tenant.namespaces) / totals[over]
    return result


def share_problems(config: StackConfig) -> list[str]:
    """What the policy pack's capacity rule would refuse at `pulumi up`, said before the file is written."""
    problems = []
    totals: dict[str, Decimal] = {}
    for index, tenant in enumerate(config.tenants):
        for key, share in shares(config, tenant).items():
            totals[key] = totals.get(key, Decimal(0)) + share
            if share > Decimal(str(config.platform.max_tenant_share)):
                problems.append(
                    f"tenants[{index}].quota: tenant {tenant.name!r} would hold {share:.0%} of the cluster's "
                    f"{SHARED[key]} ({key}), above platform.maxTenantShare {config.platform.max_tenant_share:.0%}"
                )
    ratio = Decimal(str(config.platform.over_subscription_ratio))
    for key, total in totals.items():
        if total > ratio:
            problems.append(
                f"tenants: all tenants together would hold {total:.0%} of the cluster's {SHARED[key]} ({key}), "
                f"above platform.overSubscriptionRatio {ratio:g}"
            )
    return problems
