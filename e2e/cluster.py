"""A throwaway control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
kwok, every one bound to 127.0.0.1 inside the network namespace the run created (e2e/run.sh).

`ControlPlane.start()` starts them in order and waits for each to be ready; `stop()` ends
exactly the processes it started, by pid, and is safe to call after a failed start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from e2e.pki import Pki, make_pki

ETCD_CLIENT, ETCD_PEER = 2379, 2380
APISERVER = 6443
SERVICE_CIDR = "10.96.0.0/16"
# kwok hands out pod IPs from here; no packet is ever sent to them.
POD_CIDR = "10.244.0.0/16"

# The admission plugins a kubeadm/kind cluster runs, on top of the apiserver's defaults.
ADMISSION = (
    "NamespaceLifecycle,LimitRanger,ServiceAccount,PodSecurity,ResourceQuota,Priority,"
    "DefaultTolerationSeconds,NodeRestriction,DefaultStorageClass,StorageObjectInUseProtection,"
    "PersistentVolumeClaimResize,RuntimeClass,TaintNodesByCondition,DefaultIngressClass"
)


class ClusterError(RuntimeError):
    pass


def assert_isolated() -> None:
    """Refuse to start anywhere but a network namespace whose only interface is loopback."""
    interfaces = sorted(os.listdir("/sys/class/net"))
    if interfaces != ["lo"]:
        raise ClusterError(
            f"the e2e control plane runs only inside its own network namespace (found interfaces {interfaces}); "
            "start it through e2e/run.sh"
        )


def kubeconfig(pki: Pki, server: str) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {{server: "{server}", certificate-authority: "{pki.ca}"}}
users:
- name: admin
  user: {{client-certificate: "{pki.admin_cert}", client-key: "{pki.admin_key}"}}
contexts:
- name: e2e
  context: {{cluster: e2e, user: admin}}
current-context: e2e
"""


@dataclass
class ControlPlane:
    bin_dir: Path
    work_dir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{APISERVER}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.work_dir / "kubeconfig"

    def log(self, name: str) -> Path:
        return self.work_dir / f"{name}.log"

    def start(self) -> None:
        assert_isolated()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.pki = make_pki(self.work_dir / "pki")
        self.kubeconfig_path.write_text(kubeconfig(self.pki, self.server))
        try:
            self._start_etcd()
            self._start_apiserver()
            self._start_controllers()
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, args: list[str]) -> None:
        log = self.log(name).open("wb")
        # New session: a Ctrl-C of the test run reaches pytest, which stops these in order.
        self.processes[name] = subprocess.Popen(
            [str(self.bin_dir / args[0]), *args[1:]], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _wait(self, name: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes[name]
            if process.poll() is not None:
                raise ClusterError(f"{name} exited with {process.returncode}: {self._tail(name)}")
            try:
                if ready():
                    return
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.3)
        raise ClusterError(f"{name} not ready after {timeout:.0f} s: {self._tail(name)}")

    def _tail(self, name: str, lines: int = 15) -> str:
        text = self.log(name).read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def _start_etcd(self) -> None:
        self._spawn(
            "etcd",
            [
                "etcd",
                "--name=e2e",
                f"--data-dir={self.work_dir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{ETCD_CLIENT}",
                f"--advertise-client-urls=http://127.0.0.1:{ETCD_CLIENT}",
                f"--listen-peer-urls=http://127.0.0.1:{ETCD_PEER}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER}",
                f"--initial-cluster=e2e=http://127.0.0.1:{ETCD_PEER}",
                # A test cluster: losing it on a crash costs nothing, fsync costs seconds per run.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait(
            "etcd", lambda: httpx.get(f"http://127.0.0.1:{ETCD_CLIENT}/health", timeout=2).status_code == 200, 60
        )

    def _start_apiserver(self) -> None:
        pki = self.pki
        self._spawn(
            "kube-apiserver",
            [
                "kube-apiserver",
                f"--etcd-servers=http://127.0.0.1:{ETCD_CLIENT}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={APISERVER}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                f"--enable-admission-plugins={ADMISSION}",
                # Privileged pods are allowed by the apiserver, so that Pod Security (the
                # namespace labels the program sets) is what refuses them, as on kind/kubeadm.
                "--allow-privileged=true",
                # The `kubernetes` Service's endpoint would be 127.0.0.1, which Endpoints refuse.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--v=1",
            ],
        )
        self._wait("kube-apiserver", lambda: self._get("/readyz").status_code == 200, 120)

    def _start_controllers(self) -> None:
        pki, kc = self.pki, str(self.kubeconfig_path)
        auth = [f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}"]
        self._spawn(
            "kube-controller-manager",
            [
                "kube-controller-manager",
                *auth,
                "--bind-address=127.0.0.1",
                f"--cert-dir={self.work_dir / 'kcm'}",
                "--leader-elect=false",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # Each controller acts as its own service account, as on kubeadm: RBAC is real for them too.
                "--use-service-account-credentials=true",
                "--controllers=*",
                # kwok renews node leases from a loaded CI machine; a late renewal must not turn a
                # node NotReady (its pods would lose Ready for good: kwok marks them Ready once).
                "--node-monitor-grace-period=10m",
                "--v=1",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                "kube-scheduler",
                *auth,
                "--bind-address=127.0.0.1",
                f"--cert-dir={self.work_dir / 'scheduler'}",
                "--leader-elect=false",
                "--v=1",
            ],
        )
        self._spawn(
            "kwok",
            [
                "kwok",
                f"--kubeconfig={kc}",
                f"--config={self.bin_dir / 'kwok-stages.yaml'}",
                # Only the nodes the harness creates for the stack, annotated as kwok's.
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                f"--cidr={POD_CIDR}",
                "--node-ip=10.0.0.1",
                "--server-address=127.0.0.1:10247",
            ],
        )
        for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
            self._wait(name, lambda: True, 5)
        # The controller manager is working once the `default` ServiceAccount exists.
        self._wait(
            "kube-controller-manager",
            lambda: self._get("/api/v1/namespaces/default/serviceaccounts/default").status_code == 200,
            120,
        )

    def _get(self, path: str) -> httpx.Response:
        return httpx.get(
            self.server + path,
            verify=self.pki.admin_tls(),
            timeout=5,
        )

    def stop(self) -> None:
        """Stop what this object started, newest first, by pid; kill what ignores SIGTERM."""
        for name, process in reversed(list(self.processes.items())):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
            del self.processes[name]
