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

from .config import PackConfig, PolicyConfig
from .model import Resource
from .registry import REGISTRY
from .rule import Rule, checked

CONFIG_SCHEMA = PolicyConfigSchema(
    properties={
        "maxTenantShare": {
            "type": "number",
            "default": 0.30,
            "exclusiveMinimum": 0,
            "maximum": 1,
            "description": "Largest share of the cluster one tenant may hold; a stack may only lower it",
        },
        "overSubscriptionRatio": {
            "type": "number",
            "default": 1.0,
            "minimum": 1,
            "description": "All tenants' quotas together stay within capacity x this; a stack may only lower it",
        },
        "gpuTaintKey": {"type": "string", "default": "nvidia.com/gpu"},
        "gpuPoolLabel": {"type": "string", "default": "platform.io/pool=gpu"},
        "capacity": {
            "type": "object",
            "description": "A ceiling on the cluster's size, and the size where the stack has no capacity record",
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
        # CrossGuard runs each policy on its own, with its own configuration: resolve once per policy.
        settings = PolicyConfig.resolve(PackConfig.from_mapping(args.get_config()), resources)
        for where, message in checked(rule, resources, settings):
            report_violation(message, urns.get(where))

    return validate


def _resource_validator(rule: Rule):
    def validate(args, report_violation) -> None:
        resource = _resource(args)
        for message in checked(rule, resource, PolicyConfig.resolve(PackConfig.from_mapping(args.get_config()), [])):
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
            "config_schema": CONFIG_SCHEMA,
        }
        if rule.scope == "stack":
            built.append(StackValidationPolicy(validate=_stack_validator(rule), **common))
        else:
            built.append(ResourceValidationPolicy(validate=_resource_validator(rule), **common))
    return built
