"""IngressClasses as each cluster has them before `pulumi up`: the README's prerequisites, nothing the program creates.

minikube's `ingress` add-on (the README's step for the minikube stack, which exposes the gateway
through an Ingress) creates the IngressClass `nginx` for ingress-nginx's controller. The other
stacks expose nothing through an Ingress, so their clusters get none. Kept apart from the stack
files on purpose: a stack that starts naming another class, or the README a different step,
fails preflight here until the two agree again.
"""

from __future__ import annotations

from typing import Any

from e2e.kube import Kube


def ingress_class(name: str, controller: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": name},
        "spec": {"controller": controller},
    }


CLUSTER_INGRESS_CLASSES = {
    "minikube": [ingress_class("nginx", "k8s.io/ingress-nginx")],
    "kind": [],
    "eks": [],
    "onprem": [],
}


def install(kube: Kube, flavour: str) -> None:
    for ingress in CLUSTER_INGRESS_CLASSES[flavour]:
        kube.create(ingress)
