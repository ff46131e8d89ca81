"""Storage as each cluster has it before `pulumi up`, and a stand-in for its provisioner.

kind and minikube ship a default StorageClass (`standard`); EKS has `gp2` (not default since
1.30) and its EBS CSI driver provisions any class for `ebs.csi.aws.com`; a bare kubeadm node (onprem)
has none. For onprem and EKS the README's "Running it for real" has the operator install a
provisioner and class first (local-path, gp3): those prerequisites are here, nothing the program
itself is supposed to create. No volume is real here: the stand-in provisioner creates a PV
for each Pending claim whose class exists and is provisioned on that cluster, and the real PV
controller and scheduler bind it. A claim with no such class stays Pending, as it would.
"""

from __future__ import annotations

from typing import Any

from e2e.kube import ApiError, Kube

DEFAULT = "storageclass.kubernetes.io/is-default-class"


def storage_class(name: str, provisioner: str, *, default: bool, binding: str) -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name, "annotations": {DEFAULT: "true"} if default else {}},
        "provisioner": provisioner,
        "volumeBindingMode": binding,
    }


CLUSTER_CLASSES = {
    "kind": [storage_class("standard", "rancher.io/local-path", default=True, binding="WaitForFirstConsumer")],
    "minikube": [storage_class("standard", "k8s.io/minikube-hostpath", default=True, binding="Immediate")],
    # As EKS ships it (gp2, not default), plus the README's prerequisite for the gpu-cloud stack: the EBS CSI
    # add-on and a gp3 class, which the stack names as `platform.storageClass`.
    "eks": [
        storage_class("gp2", "kubernetes.io/aws-ebs", default=False, binding="WaitForFirstConsumer"),
        storage_class("gp3", "ebs.csi.aws.com", default=False, binding="WaitForFirstConsumer"),
    ],
    # A bare kubeadm node has none; the README's prerequisite for the onprem stack is a provisioner
    # (local-path-provisioner) whose class the stack names as `platform.storageClass`.
    "onprem": [storage_class("local-path", "rancher.io/local-path", default=False, binding="WaitForFirstConsumer")],
}
# Provisioners running on each cluster (EKS: the EBS CSI add-on, also for classes the program creates).
PROVISIONERS = {
    "kind": {"rancher.io/local-path"},
    "minikube": {"k8s.io/minikube-hostpath"},
    "eks": {"kubernetes.io/aws-ebs", "ebs.csi.aws.com"},
    "onprem": {"rancher.io/local-path"},
}


class Provisioner:
    def __init__(self, kube: Kube, flavour: str):
        self.kube, self.flavour = kube, flavour

    def install(self) -> None:
        for sc in CLUSTER_CLASSES[self.flavour]:
            self.kube.create(sc)

    def reconcile(self) -> None:
        classes = {sc["metadata"]["name"]: sc for sc in self.kube.list("storage.k8s.io/v1", "StorageClass")}
        default = next(
            (n for n, sc in classes.items() if sc["metadata"].get("annotations", {}).get(DEFAULT) == "true"), None
        )
        for claim in self.kube.list("v1", "PersistentVolumeClaim"):
            if claim.get("status", {}).get("phase") != "Pending" or claim["spec"].get("volumeName"):
                continue
            name = claim["spec"].get("storageClassName") or default
            sc = classes.get(name or "")
            if not sc or sc["provisioner"] not in PROVISIONERS[self.flavour]:
                continue
            meta = claim["metadata"]
            pv_name = f"pv-{meta['namespace']}-{meta['name']}"[:253]
            pv = {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv_name, "labels": {"e2e.gpu-platform.io/stand-in": "true"}},
                "spec": {
                    "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
                    "accessModes": claim["spec"].get("accessModes", ["ReadWriteOnce"]),
                    "storageClassName": name,
                    "persistentVolumeReclaimPolicy": "Delete",
                    "claimRef": {"namespace": meta["namespace"], "name": meta["name"]},
                    "hostPath": {"path": f"/var/e2e/{pv_name}"},
                },
            }
            try:
                self.kube.create(pv)
            except ApiError as error:
                if error.status != 409:
                    raise
