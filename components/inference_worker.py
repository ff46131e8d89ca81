"""InferenceWorker: one model server (mock, vLLM or SGLang) in a tenant namespace.

A Deployment on the GPU pool (GPU request = limit, the pool's toleration and selector),
probes that allow for model loading, a preStop pause and grace period so in-flight requests
drain, spread across nodes (and zones for gold), a PodDisruptionBudget, a Service, an HPA on
the per-pod queue depth that prometheus-adapter exposes, a ServiceMonitor, and optionally a
model-cache PVC and internet egress for downloading weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import labels
from components.metrics_catalog import QUEUE_DEPTH_METRIC
from components.worker_engines import PORT, container_args, default_resources
from infra.config import Images
from infra.config.workers import Worker
from infra.quantity import format_bytes, format_cpu

PRE_STOP_SECONDS = 5
PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"]


@dataclass(frozen=True)
class InferenceWorkerArgs:
    tenant: str
    tier: str
    namespace: str
    worker: Worker
    images: Images
    node_selector: dict[str, str]
    toleration: dict[str, str]
    priority_class_name: str


def hpa_behavior(worker: Worker) -> dict[str, Any]:
    scaling = worker.autoscaling
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": scaling.scale_up_window_seconds,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Pods", "value": scaling.scale_up_pods, "periodSeconds": scaling.scale_up_period_seconds}
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": scaling.scale_down_window_seconds,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        },
    }


def resources(worker: Worker) -> dict[str, dict[str, str]]:
    defaults = default_resources(worker.engine)
    cpu = worker.cpu if worker.cpu is not None else defaults["cpu"]
    memory = worker.memory if worker.memory is not None else defaults["memory"]
    requests = {"cpu": format_cpu(cpu), "memory": format_bytes(memory)}
    limits = {
        "cpu": format_cpu(worker.cpu_limit if worker.cpu_limit is not None else max(cpu, defaults["cpu_limit"])),
        "memory": format_bytes(
            worker.memory_limit if worker.memory_limit is not None else max(memory, defaults["memory_limit"])
        ),
    }
    # Extended resources cannot be overcommitted: the GPU limit always equals the request.
    requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(worker.gpus)
    return {"requests": requests, "limits": limits}


def pod_spec(args: InferenceWorkerArgs, selector: dict[str, str], pvc_name: str | None) -> dict[str, Any]:
    worker = args.worker
    env = [{"name": "HOME", "value": "/tmp"}, {"name": "HF_HOME", "value": "/models/hf"}]
    if worker.hf_token_secret:
        env.append(
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": worker.hf_token_secret, "key": "HF_TOKEN"}}}
        )
    probe = {"httpGet": {"path": "/health", "port": "http"}}
    container = {
        "name": "engine",
        "image": worker.image or getattr(args.images, "mock_worker" if worker.engine == "mock" else worker.engine),
        "imagePullPolicy": "IfNotPresent",
        **container_args(worker),
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": env,
        "resources": resources(worker),
        # Weights can take minutes to load: the startup probe allows 10 minutes before liveness applies.
        "startupProbe": {**probe, "periodSeconds": 10, "failureThreshold": 60},
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {**probe, "periodSeconds": 15, "failureThreshold": 3, "timeoutSeconds": 5},
        # The endpoint is removed from the Service first; the pause lets in-flight requests finish.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "models", "mountPath": "/models"},
            {"name": "shm", "mountPath": "/dev/shm"},
        ],
    }
    models_volume = (
        {"name": "models", "persistentVolumeClaim": {"claimName": pvc_name}}
        if pvc_name
        else {"name": "models", "emptyDir": {}}
    )
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector},
        }
    ]
    if args.tier == "gold":
        spread.append({**spread[0], "topologyKey": "topology.kubernetes.io/zone"})
    spec: dict[str, Any] = {
        "priorityClassName": args.priority_class_name,
        "automountServiceAccountToken": False,
        # Service links would inject <SERVICE>_PORT=tcp://… variables the engines may misread as settings.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": worker.drain_seconds + PRE_STOP_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            models_volume,
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
        ],
        "topologySpreadConstraints": spread,
    }
    if worker.gpus:
        spec["nodeSelector"] = dict(args.node_selector)
        spec["tolerations"] = [dict(args.toleration)]
    return spec


class InferenceWorker(pulumi.ComponentResource):
    service_name: str
    upstream_url: str
    served_model_name: str
    engine: str

    def __init__(self, name: str, args: InferenceWorkerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:worker:InferenceWorker", name, None, opts)
        worker, namespace = args.worker, args.namespace
        child = pulumi.ResourceOptions(parent=self)
        instance = f"{args.tenant}-{worker.name}"
        selector = {"app.kubernetes.io/name": worker.name, "app.kubernetes.io/instance": instance}
        common = {
            **labels.recommended(worker.name, "inference-worker", instance=instance),
            labels.TENANT: args.tenant,
            "platform.io/engine": worker.engine,
        }

        def meta(name: str, **extra: Any) -> dict[str, Any]:
            return {"name": name, "namespace": namespace, "labels": common, **extra}

        pvc_name = None
        if worker.cache:
            pvc_name = f"{worker.name}-model-cache"
            k8s.core.v1.PersistentVolumeClaim(
                f"{instance}-cache",
                metadata=meta(pvc_name),
                spec={
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": format_bytes(worker.cache.size)}},
                    **({"storageClassName": worker.cache.storage_class} if worker.cache.storage_class else {}),
                },
                opts=child,
            )

        deployment = k8s.apps.v1.Deployment(
            instance,
            metadata=meta(worker.name),
            spec={
                "replicas": worker.autoscaling.min_replicas,
                "revisionHistoryLimit": 3,
                "selector": {"matchLabels": selector},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 0 if worker.gpus else 1, "maxUnavailable": 1},
                },
                "template": {
                    "metadata": {
                        "labels": common,
                        "annotations": {"kubectl.kubernetes.io/default-container": "engine"},
                    },
                    "spec": pod_spec(args, selector, pvc_name),
                },
            },
            # The HPA owns the replica count after the first deployment.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["spec.replicas"]),
        )
        k8s.core.v1.Service(
            f"{instance}-svc",
            metadata=meta(worker.name),
            spec={
                "type": "ClusterIP",
                "selector": selector,
                "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
            },
            opts=child,
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{instance}-pdb",
            metadata=meta(worker.name),
            spec={"maxUnavailable": 1, "selector": {"matchLabels": selector}},
            opts=child,
        )
        scaling = worker.autoscaling
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{instance}-hpa",
            metadata=meta(worker.name),
            spec={
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": worker.name},
                "minReplicas": scaling.min_replicas,
                "maxReplicas": scaling.max_replicas,
                "metrics": [
                    {
                        "type": "Pods",
                        "pods": {
                            "metric": {"name": QUEUE_DEPTH_METRIC},
                            "target": {"type": "AverageValue", "averageValue": _quantity(scaling.target_queue_depth)},
                        },
                    }
                ],
                "behavior": hpa_behavior(worker),
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[deployment]),
        )
        k8s.apiextensions.CustomResource(
            f"{instance}-monitor",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata=meta(worker.name),
            spec={
                "selector": {"matchLabels": selector},
                "namespaceSelector": {"matchNames": [namespace]},
                "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
            },
            opts=child,
        )
        if worker.allow_internet_egress if worker.allow_internet_egress is not None else worker.engine != "mock":
            k8s.networking.v1.NetworkPolicy(
                f"{instance}-egress",
                metadata=meta(f"{worker.name}-internet-egress"),
                spec={
                    "podSelector": {"matchLabels": selector},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE_RANGES}}],
                            "ports": [{"protocol": "TCP", "port": 443}],
                        }
                    ],
                },
                opts=child,
            )

        self.service_name = worker.name
        self.upstream_url = f"http://{worker.name}.{namespace}.svc.cluster.local:{PORT}"
        self.served_model_name = worker.served_name
        self.engine = worker.engine
        self.register_outputs({"upstreamUrl": self.upstream_url, "servedModelName": self.served_model_name})


def _quantity(value: float) -> str:
    """An HPA target as a Kubernetes quantity ("5", "2500m")."""
    return str(int(value)) if float(value).is_integer() else f"{int(round(value * 1000))}m"
