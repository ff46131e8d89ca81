"""The tenant-aware gateway: replicas, Redis, and how it is exposed."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from infra.config.base import (
    Cidr,
    DnsLabel,
    DnsSubdomain,
    Hostname,
    IngressClassName,
    Int32,
    Model,
    Quantity,
    StorageClassName,
)
from infra.config.monitoring import Resources


class ParentGateway(Model):
    """The Gateway API Gateway (owned by the cluster's controller) that HTTPRoutes attach to."""

    name: DnsSubdomain = "platform"
    namespace: DnsLabel = "gateway-system"
    section_name: DnsSubdomain | None = None


class GatewayApi(Model):
    """Gateway API exposure: an HTTPRoute attached to a Gateway that the cluster's controller owns.

    The Gateway's listener must admit routes from the gateway namespace
    (`allowedRoutes.namespaces.from: All`, or `Selector` matching it).
    """

    # Install the standard-channel Gateway API CRDs (vendored, v1.6.1) with the platform, for clusters that
    # have none; clusters whose Gateway controller installs them leave this off.
    install_crds: bool = False


class RedisSettings(Model):
    storage: Quantity = "1Gi"
    storage_class: StorageClassName | None = None
    max_memory: Quantity = "256Mi"
    resources: Resources = Resources(cpu="100m", memory="384Mi", memory_limit="384Mi")


class GatewayStackSettings(Model):
    """`gpu-platform:gateway`: how GatewayStack deploys the gateway (the gateway process has its own
    GatewaySettings, from GATEWAY_* variables)."""

    enabled: bool = True
    replicas: Int32 = Field(default=2, ge=2)
    max_replicas: Int32 = Field(default=6, ge=2)
    # The HPA adds a replica when the average replica holds more requests in flight than this.
    target_inflight_per_replica: int = Field(default=64, ge=1, le=100_000)
    # How clients reach the gateway. `none` (a ClusterIP Service; `kubectl port-forward` or an in-cluster
    # client) works on every cluster; `gateway-api` needs the Gateway API CRDs, a controller and its Gateway;
    # `ingress` an Ingress controller.
    exposure: Literal["gateway-api", "ingress", "none"] = "none"
    hostname: Hostname = "gateway.local"
    parent_gateway: ParentGateway = ParentGateway()
    gateway_api: GatewayApi = GatewayApi()
    # Ingress: pulumi-kubernetes waits for a load-balancer address, which some controllers (minikube's addon
    # without `minikube tunnel`) never report; False creates the Ingress without waiting.
    await_ingress: bool = False
    ingress_class_name: IngressClassName | None = None
    fail_closed: bool = False
    # Where the gateway's EndpointSlice watch may reach the Kubernetes API: the API servers' own addresses
    # (NetworkPolicies see them after the `kubernetes` Service's DNAT: `kubectl get endpoints kubernetes`).
    # Empty: any address on the API ports 443 and 6443, since those addresses differ per cluster.
    api_server_cidrs: list[Cidr] = Field(default_factory=list, max_length=64)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Also the pods' termination grace period, which Kubernetes holds in whole seconds.
    upstream_timeout_seconds: float = Field(default=120, gt=0, le=86_400)
    resources: Resources = Resources(cpu="250m", memory="128Mi", memory_limit="256Mi")
    redis: RedisSettings = RedisSettings()

    @model_validator(mode="after")
    def _replicas(self) -> GatewayStackSettings:
        if self.max_replicas < self.replicas:
            raise ValueError(f"maxReplicas ({self.max_replicas}) must be >= replicas ({self.replicas})")
        if self.exposure == "ingress" and not self.ingress_class_name:
            raise ValueError("ingressClassName: name the cluster's ingress class (e.g. traefik, haproxy, nginx)")
        return self
