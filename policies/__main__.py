"""The CrossGuard pack: wiring only. The rules live in platform_rules/, which the offline check imports."""

from platform_rules.pack import policies
from pulumi_policy import PolicyPack

PolicyPack(name="gpu-platform-policies", policies=policies())
