"""The security contexts of the platform's own pods: non-root, no privilege escalation, no capabilities.

What Pod Security `restricted` demands, so the gateway's namespace can enforce it.
"""

from __future__ import annotations

from typing import Any


def container_security(read_only: bool = True) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_security(uid: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
