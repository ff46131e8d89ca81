"""The three tenant roles as RBAC rules.

Least privilege by construction: nobody in a tenant may change its own quota, limits,
network policies or role bindings (those are the platform's, changed through the stack);
viewers read workloads but never Secrets; users may read exactly one Secret, the tenant's
API keys; only admins manage Secrets and may exec into pods.
"""

from __future__ import annotations

READ = ["get", "list", "watch"]
WRITE = ["create", "update", "patch", "delete", "deletecollection"]

# (apiGroup, resources) a tenant may see; the platform-owned guardrails are read-only for all roles.
_WORKLOADS = [
    ("", ["pods", "services", "endpoints", "configmaps", "persistentvolumeclaims", "serviceaccounts"]),
    ("apps", ["deployments", "statefulsets", "replicasets"]),
    ("autoscaling", ["horizontalpodautoscalers"]),
    ("batch", ["jobs", "cronjobs"]),
    ("policy", ["poddisruptionbudgets"]),
    ("monitoring.coreos.com", ["servicemonitors", "podmonitors"]),
]
_GUARDRAILS = [
    ("", ["resourcequotas", "limitranges", "events", "pods/log"]),
    ("networking.k8s.io", ["networkpolicies"]),
    ("events.k8s.io", ["events"]),
]

ROLES = ("admin", "user", "viewer")


def _rules(groups: list[tuple[str, list[str]]], verbs: list[str]) -> list[dict]:
    return [{"apiGroups": [group], "resources": resources, "verbs": verbs} for group, resources in groups]


def role_rules(role: str, api_key_secret: str) -> list[dict]:
    """Rules for `tenant-<role>`; `api_key_secret` is the one Secret a user may read."""
    read_all = _rules(_WORKLOADS, READ) + _rules(_GUARDRAILS, READ)
    if role == "viewer":
        return read_all
    if role == "user":
        return (
            read_all
            + _rules(_WORKLOADS, WRITE)
            + [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [api_key_secret], "verbs": ["get"]}]
        )
    if role == "admin":
        return (
            read_all
            + _rules(_WORKLOADS, WRITE)
            + [
                {"apiGroups": [""], "resources": ["secrets"], "verbs": READ + WRITE},
                {"apiGroups": [""], "resources": ["pods/exec", "pods/portforward"], "verbs": ["create", "get"]},
            ]
        )
    raise ValueError(f"unknown tenant role {role!r}; expected one of {ROLES}")


def subjects(users: list[str], groups: list[str]) -> list[dict]:
    api = "rbac.authorization.k8s.io"
    return [{"kind": "User", "name": user, "apiGroup": api} for user in users] + [
        {"kind": "Group", "name": group, "apiGroup": api} for group in groups
    ]
