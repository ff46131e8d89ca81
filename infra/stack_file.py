"""Reading a stack's configuration, from a stack file or from the Pulumi runtime.

Both paths produce the same `{key: value}` mapping of the project's namespace and parse it
with `parse_stack_config`, so `pulumi up` and the offline preview see identical models and
report identical errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from infra.config import PROJECT, StackConfig

STACKS_DIR = Path(__file__).resolve().parent.parent / "stacks"


class ConfigError(Exception):
    """A stack configuration problem; `problems` are lines of the form `key.path: what is wrong`."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {problem}" for problem in problems))


def stack_file_path(stack: str) -> Path:
    return STACKS_DIR / f"Pulumi.{stack}.yaml"


def display_path(path: Path) -> str:
    """Paths inside the project are shown relative to it, as a user would type them."""
    try:
        return str(path.resolve().relative_to(STACKS_DIR.parent))
    except ValueError:
        return str(path)


def read_stack_file(path: Path) -> dict[str, Any]:
    """The `config:` mapping of a stack file, with keys as Pulumi writes them (`project:key`)."""
    source = display_path(path)
    if not path.is_file():
        available = ", ".join(sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in STACKS_DIR.glob("Pulumi.*.yaml")))
        raise ConfigError(source, [f"stack file not found (shipped stacks: {available})"])
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML: {exc}"]) from exc
    if not isinstance(document, dict):
        raise ConfigError(source, ["expected a mapping with a `config:` key"])
    unknown = sorted(set(document) - {"config", "secretsprovider", "encryptionsalt", "environment"})
    if unknown:
        raise ConfigError(source, [f"{key}: unknown top-level key of a Pulumi stack file" for key in unknown])
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(source, ["config: expected a mapping of `project:key` entries"])
    return config


def project_values(config: dict[str, Any]) -> dict[str, Any]:
    """The project's own keys without the `gpu-platform:` prefix; provider keys are left out."""
    prefix = f"{PROJECT}:"
    return {key[len(prefix) :]: value for key, value in config.items() if key.startswith(prefix)}


def parse_stack_config(values: dict[str, Any], source: str) -> StackConfig:
    try:
        return StackConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(error) for error in exc.errors()]) from None


def load_stack_file(path: Path) -> StackConfig:
    return parse_stack_config(project_values(read_stack_file(path)), display_path(path))


def pulumi_config_values(raw: dict[str, Any]) -> dict[str, Any]:
    """Config as the Pulumi runtime holds it: strings, objects JSON-encoded."""
    values = {}
    for key, value in project_values(raw).items():
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        values[key] = value
    return values


def to_pulumi_config(config: dict[str, Any]) -> dict[str, str]:
    """The inverse of `pulumi_config_values`: what `pulumi config set --path` would store."""
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}


def _describe(error: dict[str, Any]) -> str:
    path = _format_location(error["loc"])
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        message = "unknown key (check the spelling against the README's stack reference)"
    elif kind == "missing":
        message = "required key is missing"
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()))
        message = f"must be {op} {bound}"
    elif kind == "literal_error":
        message = f"must be one of {ctx.get('expected')}, got {error.get('input')!r}"
    else:
        message = error["msg"].removeprefix("Value error, ")
    # Model-level checks already carry their own key path at the front of the message.
    if not path:
        return message
    return f"{path}: {message}"


def _format_location(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif str(part).startswith("function-"):  # pydantic's name for a validator step, not a key
            continue
        else:
            text += f".{part}" if text else str(part)
    return text
