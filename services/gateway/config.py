"""The tenants document: who may call what, how much, and where it goes.

Built from the stack (infra/gateway_document.py) and written by the Pulumi GatewayStack
(components/gateway.py) into a mounted Secret; the gateway only ever sees SHA-256 hashes of API
keys. The GATEWAY_UPSTREAMS / GATEWAY_DEFAULT_UPSTREAM / GATEWAY_ROUTE_POLICIES environment
variables are also read: they fill in upstreams and routes for every tenant that declares none
of its own.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True, allow_inf_nan=False
    )


# Bounds keep every number the limit script receives an exact integer (Lua numbers are doubles).
LIMIT_MAX = 2**50


class Limits(_Model):
    rpm: int | None = Field(default=None, ge=0, le=LIMIT_MAX)
    tpm: int | None = Field(default=None, ge=0, le=LIMIT_MAX)
    # Requests in flight at the engines and waiting for a slot, across all gateway replicas.
    max_concurrency: int = Field(default=16, ge=1, le=1_000_000)
    max_queue: int = Field(default=32, ge=0, le=1_000_000)
    # Output tokens per choice for a request that states no max_tokens: sent upstream as its
    # max_tokens and charged up front (by model, else for all the tenant's models, else the
    # gateway's GATEWAY_DEFAULT_MAX_TOKENS). A model's context limit is a sensible value here.
    max_tokens: int | None = Field(default=None, ge=1, le=2**31 - 1)
    max_tokens_by_model: dict[str, int] = {}

    def output_cap(self, model: str, default: int) -> int:
        return self.max_tokens_by_model.get(model) or self.max_tokens or default


class Route(_Model):
    strategy: Literal["direct", "weighted", "canary"]
    primary: str | None = None
    canary: str | None = None
    percent: float | None = Field(default=None, ge=0, le=100)
    weights: dict[str, Annotated[float, Field(ge=0, le=100)]] = {}
    # Which pod behind the chosen worker (services/gateway/picker.py); None: GATEWAY_PICKER_POLICY.
    picker: Literal["prefix", "least-load", "round-robin", "random"] | None = None

    @model_validator(mode="after")
    def _shape(self) -> Route:
        needed = {
            "direct": self.primary,
            "canary": self.primary and self.canary and self.percent is not None,
            "weighted": self.weights,
        }
        if not needed[self.strategy]:
            raise ValueError(f"a {self.strategy} route is missing its upstreams (see services/gateway/README.md)")
        if self.strategy == "weighted" and not sum(self.weights.values()) > 0:
            raise ValueError("a weighted route needs at least one weight above 0")
        return self

    @property
    def upstream_names(self) -> list[str]:
        if self.strategy == "weighted":
            return list(self.weights)
        return [name for name in (self.primary, self.canary) if name]


class TenantEntry(_Model):
    """One tenant's entry in the gateway's document: its keys, models, limits, upstreams and routes."""

    tier: str = "bronze"
    weight: float = Field(default=1.0, gt=0)
    key_hashes: list[str] = []
    models: list[str] = []
    limits: Limits = Limits()
    upstreams: dict[str, str] = {}
    routes: dict[str, Route] = {}


class Document(_Model):
    tenants: dict[str, TenantEntry]
    # Worker URL -> its pods' URLs, where no EndpointSlice watcher runs (tests, local runs).
    endpoints: dict[str, list[str]] = {}


class DocumentError(Exception):
    """The gateway's document (or its environment defaults) cannot be used; the message says where."""


def hash_key(key: str | bytes) -> str:
    return hashlib.sha256(key if isinstance(key, bytes) else key.encode("utf-8")).hexdigest()


def parse_upstreams(text: str) -> dict[str, str]:
    """GATEWAY_UPSTREAMS' `name=url;name=url`."""
    upstreams = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, url = part.partition("=")
        if not sep or not name.strip() or not url.strip():
            raise DocumentError(f"GATEWAY_UPSTREAMS: {part!r} is not name=url")
        upstreams[name.strip()] = url.strip().rstrip("/")
    return upstreams


def with_env_defaults(document: Document, upstreams: str | None, default: str | None, policies: str | None) -> Document:
    if not (upstreams or policies):
        return document
    shared_upstreams = parse_upstreams(upstreams or "")
    try:
        shared_routes = {model: Route.model_validate(route) for model, route in json.loads(policies or "{}").items()}
    except (ValueError, RecursionError, AttributeError) as exc:  # ValidationError is a ValueError
        raise DocumentError(f"GATEWAY_ROUTE_POLICIES: {exc}") from None
    tenants = {}
    for name, tenant in document.tenants.items():
        if tenant.upstreams:
            tenants[name] = tenant
            continue
        routes = dict(shared_routes)
        if default and default in shared_upstreams:
            for model in tenant.models:
                routes.setdefault(model, Route(strategy="direct", primary=default))
        tenants[name] = tenant.model_copy(update={"upstreams": shared_upstreams, "routes": routes})
    return Document(tenants=tenants, endpoints=document.endpoints)


def _endpoint_problems(document: Document) -> list[str]:
    problems = []
    for worker, pods in document.endpoints.items():
        for url in (worker, *pods):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problems.append(f"endpoints.{worker}: {url!r} is not an http:// or https:// URL")
    return problems


def tenant_problem(name: str, tenant: TenantEntry) -> str | None:
    """What is wrong with one tenant's entry beyond its schema, or None."""
    for upstream, url in tenant.upstreams.items():
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"tenants.{name}.upstreams.{upstream}: {url!r} is not an http:// or https:// URL"
        try:
            parts.port  # noqa: B018 - raises for a port that is not a number from 0 to 65535
        except ValueError:
            return f"tenants.{name}.upstreams.{upstream}: {url!r} has an invalid port"
    for model, route in tenant.routes.items():
        missing = [u for u in route.upstream_names if u not in tenant.upstreams]
        if missing:
            return f"tenants.{name}.routes.{model}: unknown upstreams {missing}"
    for model, cap in tenant.limits.max_tokens_by_model.items():
        if cap < 1:
            return f"tenants.{name}.limits.maxTokensByModel.{model}: must be at least 1, not {cap}"
    return None


def _shared_key_problems(tenants: dict[str, TenantEntry], holders: dict[str, str] | None = None) -> dict[str, str]:
    """Tenants claiming a key hash another tenant also claims: one key would authenticate as either.

    `holders` (hash -> tenant in the document in use, on a reload): of the claimants, its holder
    keeps the key and every other claimant is refused, so no edit of the document can move a key
    away from its tenant by the order the entries are written in. Without it (a first load) the
    first claimant in document order keeps it.
    """
    claimants: dict[str, list[str]] = {}
    for name, tenant in tenants.items():
        for digest in {d.lower() for d in tenant.key_hashes}:
            claimants.setdefault(digest, []).append(name)
    problems: dict[str, str] = {}
    for digest, names in claimants.items():
        if len(names) < 2:
            continue
        keeper = names[0] if holders is None else holders.get(digest)
        for name in names:
            if name != keeper and name not in problems:
                others = ", ".join(repr(other) for other in names if other != name)
                problems[name] = f"tenants.{name}.keyHashes: {digest[:12]}… is also a key of tenant {others}"
    return problems


def validate(document: Document) -> Document:
    """The strict check: the first problem anywhere refuses the whole document."""
    problems = _endpoint_problems(document)
    problems += [p for name, t in document.tenants.items() if (p := tenant_problem(name, t))]
    problems += list(_shared_key_problems(document.tenants).values())
    if problems:
        raise DocumentError(problems[0])
    return document


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DocumentError(f"{path}: no such file (set GATEWAY_CONFIG_FILE)") from None
    except OSError as exc:  # a directory, no permission, a Secret volume mid-swap
        raise DocumentError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _first_error(exc: ValidationError, prefix: str) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{prefix}{where}: {first['msg']}"


def load_tenants(
    path: Path | None,
    upstreams: str | None = None,
    default: str | None = None,
    policies: str | None = None,
    previous: Document | None = None,
) -> tuple[Document, list[str]]:
    """The document, tenant by tenant: one tenant's bad entry never stops the others from loading.

    A tenant whose entry is invalid keeps its previous entry (`previous`, the document in use) or,
    on the first load, is left out; its problem is returned, and the other tenants load as written.
    Only a file that is not a document at all (unreadable, not JSON, no `tenants` mapping, bad
    `endpoints`) is a DocumentError, and then the caller keeps everything it had.
    """
    if path is None:
        return validate(with_env_defaults(Document(tenants={}), upstreams, default, policies)), []
    try:
        raw = json.loads(_read(path))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError; nesting past the stack
        raise DocumentError(f"{path}: not JSON: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("tenants"), dict):
        raise DocumentError(f"{path}: expected an object with a `tenants` object")
    try:
        shell = Document.model_validate({**raw, "tenants": {}})
    except ValidationError as exc:
        raise DocumentError(_first_error(exc, f"{path}: ")) from None
    endpoint_problems = _endpoint_problems(shell)
    if endpoint_problems:
        raise DocumentError(f"{path}: {endpoint_problems[0]}")
    kept = previous.tenants if previous is not None else {}
    problems: list[str] = []
    tenants: dict[str, TenantEntry] = {}
    for name, entry in raw["tenants"].items():
        try:
            tenants[name] = TenantEntry.model_validate(entry)
        except ValidationError as exc:
            problems.append(_first_error(exc, f"{path}: tenants.{name}."))
            if name in kept:
                tenants[name] = kept[name]
    document = with_env_defaults(Document(tenants=tenants, endpoints=shell.endpoints), upstreams, default, policies)
    tenants = dict(document.tenants)
    for name, tenant in list(tenants.items()):
        problem = tenant_problem(name, tenant)
        if problem is not None:
            problems.append(f"{path}: {problem}")
            if name in kept and tenant_problem(name, kept[name]) is None:
                tenants[name] = kept[name]
            else:
                del tenants[name]
    holders = KeyIndex(previous).tenant_of if previous is not None else None
    # A refused tenant falls back to its previous entry, whose keys may now be claimed by another
    # tenant's new entry: repeat until no key is claimed twice (each round refuses a new entry).
    while shared := _shared_key_problems(tenants, holders):
        for name, problem in shared.items():
            problems.append(f"{path}: {problem}")
            if name in kept and tenants[name] is not kept[name]:
                tenants[name] = kept[name]
            else:
                del tenants[name]
    return Document(tenants=tenants, endpoints=document.endpoints), problems


def load(
    path: Path | None, upstreams: str | None = None, default: str | None = None, policies: str | None = None
) -> Document:
    """The strict form of `load_tenants`: any tenant's problem is a DocumentError."""
    document, problems = load_tenants(path, upstreams, default, policies)
    if problems:
        raise DocumentError(problems[0])
    return document


class KeyIndex:
    """SHA-256 of a key -> tenant name; rebuilt on every reload, looked up on every request."""

    def __init__(self, document: Document):
        self.tenant_of: dict[str, str] = {}
        for name, tenant in document.tenants.items():
            for digest in tenant.key_hashes:
                self.tenant_of[digest.lower()] = name

    def tenant(self, key: str | bytes) -> str | None:
        return self.tenant_of.get(hash_key(key))
