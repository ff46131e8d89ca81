"""Policy rules of the GPU platform, shared by the CrossGuard pack and `platformctl policy check`."""

from .config import PackConfig, PolicyConfig
from .model import Resource, Violation
from .registry import REGISTRY, evaluate
from .rule import Rule, rule

__all__ = ["REGISTRY", "PackConfig", "PolicyConfig", "Resource", "Rule", "Violation", "evaluate", "rule"]
