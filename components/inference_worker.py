"""InferenceWorker: one model server (mock, vLLM or SGLang) in a tenant namespace.

A Deployment on the GPU pool (GPU request = limit, the pool's toleration and selector),
probes that allow for model loading, a preStop pause and grace period so in-flight requests
drain, spread across nodes (and zones for gold), a PodDisruptionBudget, a Service, an HPA on
the per-pod queue depth that prometheus-adapter exposes, a ServiceMonitor, and optionally a
model-cache PVC and internet egress for downloading weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import labels
from components.metrics_catalog import QUEUE_DEPTH_METRIC
from components.worker_engines import container_args, default_resources, engine_env, port, ready_timeout
from infra.config import Images
from infra.config.engines import engine
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
    # What the pods need before they can start: their PriorityClass (admission refuses a pod naming one
    # that does not exist yet), the GPU pool (device plugin, node group) for GPU workers, the HF token Secret.
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    # The tenant's own resources (its TenantStack): namespace, quota, LimitRange, policies.
    tenancy: list[pulumi.Resource] = field(default_factory=list)
    # What installs the ServiceMonitor CRD; None renders no monitor (monitoring disabled).
    monitoring_crds: pulumi.Resource | None = None
    # The platform's default StorageClass, for the model cache when it names none itself.
    storage_class: str | None = None


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
    env += [{"name": name, "value": value} for name, value in engine_env(worker.engine).items()]
    if worker.hf_token_secret:
        env.append(
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": worker.hf_token_secret, "key": "HF_TOKEN"}}}
        )
    probe = {"httpGet": {"path": "/health", "port": "http"}}
    container = {
        "name": "engine",
        "image": worker.image or getattr(args.images, engine(worker.engine).image_setting),
        "imagePullPolicy": "IfNotPresent",
        **container_args(worker),
        "ports": [{"name": "http", "containerPort": port(worker.engine), "protocol": "TCP"}],
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
        worker = args.worker
        self._args = args
        # Every object lands in the tenant's namespace, under its quota and LimitRange: they come first
        # (depends_on the TenantStack waits for all of its children). A pod admitted before its quota
        # exists is never counted against it.
        self._tenancy = list(args.tenancy)
        self._instance = instance = f"{args.tenant}-{worker.name}"
        self._selector = {"app.kubernetes.io/name": worker.name, "app.kubernetes.io/instance": instance}
        self._labels = {
            **labels.recommended(worker.name, "inference-worker", instance=instance),
            labels.TENANT: args.tenant,
            "platform.io/engine": worker.engine,
        }
        pvc = self._model_cache() if worker.cache else None
        deployment = self._deployment(pvc)
        self._service()
        self._disruption_budget()
        self._autoscaler(deployment)
        if args.monitoring_crds is not None:
            self._service_monitor(args.monitoring_crds)
        if (
            worker.allow_internet_egress
            if worker.allow_internet_egress is not None
            else engine(worker.engine).needs_egress
        ):
            self._internet_egress()

        self.service_name = worker.name
        self.upstream_url = f"http://{worker.name}.{args.namespace}.svc.cluster.local:{port(worker.engine)}"
        self.served_model_name = worker.served_name
        self.engine = worker.engine
        self.register_outputs({"upstreamUrl": self.upstream_url, "servedModelName": self.served_model_name})

    def _meta(self, name: str) -> dict[str, Any]:
        return {"name": name, "namespace": self._args.namespace, "labels": self._labels}

    def _model_cache(self) -> k8s.core.v1.PersistentVolumeClaim:
        cache = self._args.worker.cache
        storage_class = cache.storage_class or self._args.storage_class
        # A claim of a WaitForFirstConsumer class binds only once its pod is scheduled: waiting for it to bind
        # before the Deployment exists would never end.
        metadata = {
            **self._meta(f"{self._args.worker.name}-model-cache"),
            "annotations": {"pulumi.com/skipAwait": "true"},
        }
        return k8s.core.v1.PersistentVolumeClaim(
            f"{self._instance}-cache",
            metadata=metadata,
            spec={
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": format_bytes(cache.size)}},
                **({"storageClassName": storage_class} if storage_class else {}),
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*self._tenancy, *self._args.depends_on]),
        )

    def _deployment(self, pvc: k8s.core.v1.PersistentVolumeClaim | None) -> k8s.apps.v1.Deployment:
        args, worker = self._args, self._args.worker
        timeout = ready_timeout(worker.engine)
        return k8s.apps.v1.Deployment(
            self._instance,
            metadata=self._meta(worker.name),
            spec={
                "replicas": worker.autoscaling.min_replicas,
                "revisionHistoryLimit": 3,
                "selector": {"matchLabels": self._selector},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 0 if worker.gpus else 1, "maxUnavailable": 1},
                },
                "template": {
                    "metadata": {
                        "labels": self._labels,
                        "annotations": {"kubectl.kubernetes.io/default-container": "engine"},
                    },
                    "spec": pod_spec(args, self._selector, f"{worker.name}-model-cache" if pvc else None),
                },
            },
            # The HPA owns the replica count after the first deployment.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*self._tenancy, *args.depends_on, *([pvc] if pvc else [])],  # the claim: created, not bound
                ignore_changes=["spec.replicas"],
                custom_timeouts=pulumi.CustomTimeouts(create=timeout, update=timeout),
            ),
        )

    def _service(self) -> None:
        k8s.core.v1.Service(
            f"{self._instance}-svc",
            metadata=self._meta(self._args.worker.name),
            spec={
                "type": "ClusterIP",
                "selector": self._selector,
                "ports": [{"name": "http", "port": port(self._args.worker.engine), "targetPort": "http"}],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._tenancy),
        )

    def _disruption_budget(self) -> None:
        k8s.policy.v1.PodDisruptionBudget(
            f"{self._instance}-pdb",
            metadata=self._meta(self._args.worker.name),
            spec={"maxUnavailable": 1, "selector": {"matchLabels": self._selector}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._tenancy),
        )

    def _autoscaler(self, deployment: k8s.apps.v1.Deployment) -> None:
        worker = self._args.worker
        scaling = worker.autoscaling
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{self._instance}-hpa",
            metadata=self._meta(worker.name),
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

    def _service_monitor(self, crds: pulumi.Resource) -> None:
        worker = self._args.worker
        k8s.apiextensions.CustomResource(
            f"{self._instance}-monitor",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata=self._meta(worker.name),
            spec={
                "selector": {"matchLabels": self._selector},
                "namespaceSelector": {"matchNames": [self._args.namespace]},
                "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*self._tenancy, crds]),
        )

    def _internet_egress(self) -> None:
        """HTTPS to public addresses only, for downloading weights; never to the cluster's private ranges."""
        worker = self._args.worker
        k8s.networking.v1.NetworkPolicy(
            f"{self._instance}-egress",
            metadata=self._meta(f"{worker.name}-internet-egress"),
            spec={
                "podSelector": {"matchLabels": self._selector},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE_RANGES}}],
                        "ports": [{"protocol": "TCP", "port": 443}],
                    }
                ],
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._tenancy),
        )


def _quantity(value: float) -> str:
    """An HPA target as a Kubernetes quantity ("5", "2500m")."""
    return str(int(value)) if float(value).is_integer() else f"{int(round(value * 1000))}m"
