"""The gateway's Redis: a password-protected, memory-bounded StatefulSet the limits live in."""

from __future__ import annotations

from typing import Any

from components.gateway_network import REDIS_PORT
from components.pod_security import container_security, pod_security
from infra.config.gateway import RedisSettings
from infra.quantity import format_bytes

REDIS_AUTH_SECRET = "redis-auth"
REDIS_PASSWORD_KEY = "password"


def password_env(name: str) -> dict[str, Any]:
    """An environment variable holding Redis' password, read from its Secret."""
    ref = {"name": REDIS_AUTH_SECRET, "key": REDIS_PASSWORD_KEY}
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def redis_statefulset_spec(
    redis: RedisSettings,
    image: str,
    common: dict[str, str],
    selector: dict[str, str],
    priority: dict[str, str],
    storage_class: str | None,
) -> dict[str, Any]:
    max_memory = format_bytes(redis.max_memory).replace("Mi", "mb").replace("Gi", "gb")
    # redis-cli reads the password from REDISCLI_AUTH, so it never appears in the probe's command line.
    probe = {"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 10}
    return {
        "serviceName": "redis",
        "replicas": 1,
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": common},
            "spec": {
                **priority,
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                # Any high uid works: redis only needs /data, which fsGroup makes writable.
                "securityContext": pod_security(10001),
                "containers": [
                    {
                        "name": "redis",
                        "image": image,
                        # Limits must never be evicted to make room: refuse writes instead (the gateway then
                        # falls back to its local limiter and says so in its metrics).
                        # $(REDIS_PASSWORD) is expanded by the kubelet from the env below.
                        "args": [
                            "redis-server",
                            "--appendonly",
                            "yes",
                            "--appendfsync",
                            "everysec",
                            "--maxmemory",
                            max_memory,
                            "--maxmemory-policy",
                            "noeviction",
                            "--requirepass",
                            "$(REDIS_PASSWORD)",
                        ],
                        "env": [password_env("REDIS_PASSWORD"), password_env("REDISCLI_AUTH")],
                        "ports": [{"name": "redis", "containerPort": REDIS_PORT}],
                        "resources": redis.resources.as_kubernetes(),
                        "readinessProbe": probe,
                        "livenessProbe": {**probe, "initialDelaySeconds": 10},
                        "securityContext": container_security(),
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    }
                ],
            },
        },
        "volumeClaimTemplates": [
            {
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": format_bytes(redis.storage)}},
                    **({"storageClassName": storage_class} if storage_class else {}),
                },
            }
        ],
    }
