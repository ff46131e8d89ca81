"""The CrossGuard pack: wiring only. The rules live in platform_rules/, which the offline check imports."""

from pulumi_policy import PolicyPack

from platform_rules.pack import policies

PolicyPack(name="gpu-platform-policies", policies=policies())
