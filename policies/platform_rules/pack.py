"""The registry's rules as pulumi_policy objects (imported only by the pack's __main__.py)."""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationPolicy,
    Severity,
    StackValidationPolicy,
)

from .model import PolicyConfig, Resource
from .registry import REGISTRY, Rule

CONFIG_SCHEMA = PolicyConfigSchema(
    properties={
        "maxTenantShare": {"type": "number", "default": 0.30, "minimum": 0, "maximum": 1},
        "overSubscriptionRatio": {"type": "number", "default": 1.0, "minimum": 1},
        "gpuTaintKey": {"type": "string", "default": "nvidia.com/gpu"},
        "gpuPoolLabel": {"type": "string", "default": "platform.io/pool=gpu"},
        "capacity": {
            "type": "object",
            "description": "Fallback when the stack has no platform-capacity ConfigMap",
            "properties": {"cpu": {"type": "string"}, "memory": {"type": "string"}, "gpu": {"type": "string"}},
        },
    }
)


def _resource(item: Any) -> Resource:
    return Resource(type=item.resource_type, name=item.name, urn=item.urn, props=dict(item.props or {}))


def _urns(resources: list[Resource]) -> dict[str, str]:
    return {resource.display: resource.urn for resource in resources}


def _stack_validator(rule: Rule):
    def validate(args, report_violation) -> None:
        resources = [_resource(item) for item in args.resources]
        urns = _urns(resources)
        for where, message in rule.fn(resources, PolicyConfig.from_mapping(args.get_config())):
            report_violation(message, urns.get(where))

    return validate


def _resource_validator(rule: Rule):
    def validate(args, report_violation) -> None:
        resource = _resource(args)
        for message in rule.fn(resource, PolicyConfig.from_mapping(args.get_config())):
            report_violation(message)

    return validate


def policies() -> list:
    built = []
    for rule in REGISTRY:
        common = {
            "name": rule.name,
            "description": rule.description,
            "enforcement_level": EnforcementLevel(rule.level),
            "severity": Severity(rule.severity),
            "config_schema": CONFIG_SCHEMA if rule.uses_config else None,
        }
        if rule.scope == "stack":
            built.append(StackValidationPolicy(validate=_stack_validator(rule), **common))
        else:
            built.append(ResourceValidationPolicy(validate=_resource_validator(rule), **common))
    return built
