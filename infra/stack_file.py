"""Reading a stack's configuration, from a stack file or from the Pulumi runtime.

Both paths produce the same `{key: value}` mapping of the project's namespace and parse it
with `parse_stack_config`, so `pulumi up` and the offline preview see identical models and
report identical errors.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from infra import stack_yaml
from infra.config import PROJECT, StackConfig
from infra.config.consistency import StackProblems

STACKS_DIR = Path(__file__).resolve().parent.parent / "stacks"
# Config namespaces of the providers the program uses, and Pulumi's own; anything else is a typo
# or a provider this program never reads, so its keys would be silently ignored.
CONFIG_NAMESPACES = (PROJECT, "kubernetes", "aws", "random", "pulumi")
TOP_LEVEL_KEYS = ("config", "secretsprovider", "encryptionsalt", "environment")
# Shipped stacks are a few KiB and an 800-tenant generated one about 100 KiB; reading YAML is slow
# enough that a much larger file would take minutes.
MAX_FILE_BYTES = 1024 * 1024
# The preview and `pulumi up` of one stack grow with its tenants; beyond this, split the platform.
MAX_TENANTS = 2000


class ConfigError(Exception):
    """A stack configuration problem; `problems` are lines of the form `key.path: what is wrong`."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {problem}" for problem in problems))


@dataclass
class StackFile:
    """A stack file as read: its `config:` mapping and the YAML it came from (for hints)."""

    source: str
    config: dict[str, Any]
    document: stack_yaml.StackYaml | None = None


def stack_file_path(stack: str) -> Path:
    return STACKS_DIR / f"Pulumi.{stack}.yaml"


def display_path(path: Path) -> str:
    """Paths inside the project are shown relative to it, as a user would type them."""
    try:
        return str(path.resolve().relative_to(STACKS_DIR.parent))
    except (ValueError, OSError, RuntimeError):
        return str(path)


def read_stack_file(path: Path) -> dict[str, Any]:
    """The `config:` mapping of a stack file, with keys as Pulumi writes them (`project:key`)."""
    return read_stack(path).config


def read_stack(path: Path) -> StackFile:
    source = display_path(path)
    text = _read_text(path, source)
    try:
        document = stack_yaml.read(text)
    except stack_yaml.StackYamlError as exc:
        raise ConfigError(source, [str(exc)]) from None
    data = {} if document.data is None else document.data
    if not isinstance(data, dict):
        raise ConfigError(source, ["expected a mapping with a `config:` key at the top of the file"])
    unknown = sorted((key for key in data if key not in TOP_LEVEL_KEYS), key=str)
    if unknown:
        raise ConfigError(
            source,
            [
                f"{key}: unknown top-level key of a Pulumi stack file (known: {', '.join(TOP_LEVEL_KEYS)})"
                for key in unknown
            ],
        )
    config = data.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError(source, ["config: expected a mapping of `project:key` entries"])
    problems = [problem for key in config for problem in _key_problems(key)]
    tenants = config.get(f"{PROJECT}:tenants")
    if isinstance(tenants, list) and len(tenants) > MAX_TENANTS:
        problems.append(
            f"tenants: {len(tenants)} tenants; one stack holds at most {MAX_TENANTS}: split the platform into several stacks"
        )
    if problems:
        raise ConfigError(source, problems)
    return StackFile(source, config, document)


def _read_text(path: Path, source: str) -> str:
    try:
        if path.is_dir():
            raise ConfigError(source, ["is a directory, not a stack file: name a Pulumi.<stack>.yaml file"])
        if not path.exists():
            shipped = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in STACKS_DIR.glob("Pulumi.*.yaml"))
            raise ConfigError(source, [f"stack file not found (shipped stacks: {', '.join(shipped)})"])
        if not path.is_file():
            raise ConfigError(source, ["not a regular file: name a Pulumi.<stack>.yaml file"])
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the stack file: {exc.strerror or exc}"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(source, [f"larger than {MAX_FILE_BYTES // 2**20} MiB; no stack file needs that much"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            source, [f"line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"]
        ) from None


def _key_problems(key: Any) -> list[str]:
    if not isinstance(key, str):
        hint = stack_yaml.scalar_hint(None, key) or "write it as namespace:key"
        return [f"config: the key {key!r} is not text; {hint}"]
    namespace, colon, name = key.partition(":")
    if not colon or not name or not namespace:
        return [
            f"{key}: Pulumi config keys are namespaced: write {PROJECT}:{key.strip(':')} for this program's settings"
        ]
    if namespace not in CONFIG_NAMESPACES:
        close = difflib.get_close_matches(namespace, CONFIG_NAMESPACES, n=1)
        hint = f"did you mean {close[0]}:{name}?" if close else f"known namespaces: {', '.join(CONFIG_NAMESPACES)}"
        return [f"{key}: unknown config namespace {namespace!r}, nothing reads this key; {hint}"]
    return []


def project_values(config: dict[str, Any]) -> dict[str, Any]:
    """The project's own keys without the `gpu-platform:` prefix; provider keys are left out."""
    prefix = f"{PROJECT}:"
    return {
        key[len(prefix) :]: value for key, value in config.items() if isinstance(key, str) and key.startswith(prefix)
    }


def parse_stack_config(
    values: dict[str, Any], source: str, document: stack_yaml.StackYaml | None = None
) -> StackConfig:
    try:
        return StackConfig.model_validate(values)
    except ValidationError as exc:
        problems = [problem for error in exc.errors() for problem in _describe(error, document)]
        raise ConfigError(source, problems) from None
    except RecursionError:
        raise ConfigError(source, ["values nest too deeply to be a stack configuration"]) from None
    except Exception as exc:  # a validator that failed in a way nobody foresaw: still a bad input, never a traceback
        raise ConfigError(source, [f"cannot be parsed ({type(exc).__name__}: {exc})"]) from None


def load_stack_file(path: Path) -> StackConfig:
    stack = read_stack(path)
    return parse_stack_config(project_values(stack.config), stack.source, stack.document)


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


def _describe(error: dict[str, Any], document: stack_yaml.StackYaml | None = None) -> list[str]:
    path = _format_location(error["loc"])
    kind, ctx = error["type"], error.get("ctx") or {}
    if isinstance(ctx.get("error"), StackProblems):
        return list(ctx["error"].problems)
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
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = f"expected a mapping of keys, got {_kind_of(error.get('input'))}"
    elif kind == "list_type":
        message = f"expected a list, got {_kind_of(error.get('input'))}"
    else:
        message = error["msg"].removeprefix("Value error, ")
    if kind == "string_type" and document is not None:
        node = document.node_at(["config", f"{PROJECT}:{error['loc'][0]}", *error["loc"][1:]]) if error["loc"] else None
        hint = stack_yaml.scalar_hint(node, error.get("input"))
        if hint:
            message = f"{message}: {hint}"
    elif kind == "string_type":
        hint = stack_yaml.scalar_hint(None, error.get("input"))
        if hint:
            message = f"{message}: {hint}"
    if error["loc"][-1:] == ("[key]",):
        # The key itself is wrong (not its value): name the mapping, then the key.
        path = _format_location(error["loc"][:-2])
        message = f"the key {_key_text(error, document)}: {message}"
    # Model-level checks already carry their own key path at the front of the message.
    if not path:
        return message.split("\n")
    return [f"{path}: {message}"]


def _key_text(error: dict[str, Any], document: stack_yaml.StackYaml | None) -> str:
    node = document.node_at(["config", f"{PROJECT}:{error['loc'][0]}", *error["loc"][1:]]) if document else None
    return repr(node.value) if node is not None and hasattr(node, "value") else repr(error.get("input"))


def _kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return f"{type(value).__name__} {value!r}"[:80]


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
