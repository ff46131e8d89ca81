"""A small Kubernetes API client over httpx with the admin client cert: discovery, server-side
apply, reads, status patches, SubjectAccessReviews and impersonation. Nothing more is needed,
and every error keeps the apiserver's own message."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from e2e.pki import Pki


class ApiError(Exception):
    def __init__(self, status: int, message: str, reason: str = ""):
        super().__init__(f"{status} {reason}: {message}".strip())
        self.status, self.message, self.reason = status, message, reason


class NoKind(ApiError):
    """The apiserver serves no such apiVersion/kind (for a custom resource: its CRD is missing)."""


@dataclass(frozen=True)
class ApiResource:
    group_version: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = "/api/" + self.group_version if "/" not in self.group_version else "/apis/" + self.group_version
        if self.namespaced:
            base += f"/namespaces/{namespace or 'default'}"
        base += "/" + self.plural
        return base + (f"/{name}" if name else "")


class Kube:
    def __init__(self, server: str, pki: Pki, impersonate: tuple[str, list[str]] | None = None):
        headers = {}
        if impersonate:
            user, groups = impersonate
            headers["Impersonate-User"] = user
        self.http = httpx.Client(
            base_url=server,
            verify=pki.admin_tls(),
            headers=headers,
            timeout=30,
        )
        if impersonate:
            # httpx merges repeated headers only from a list of pairs.
            self._impersonate_groups = [("Impersonate-Group", g) for g in impersonate[1]]
        else:
            self._impersonate_groups = []
        self.server, self.pki = server, pki
        self._resources: dict[str, dict[str, ApiResource]] = {}

    def as_user(self, user: str, groups: list[str]) -> Kube:
        return Kube(self.server, self.pki, impersonate=(user, groups))

    def close(self) -> None:
        self.http.close()

    # -- transport -------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs) -> Any:
        headers = list(kwargs.pop("headers", {}).items()) + self._impersonate_groups
        response = self.http.request(method, path, headers=headers, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
                raise ApiError(response.status_code, body.get("message", response.text), body.get("reason", ""))
            except json.JSONDecodeError:
                raise ApiError(response.status_code, response.text) from None
        return response.json() if response.content else None

    # -- discovery -------------------------------------------------------------------------
    def resource(self, api_version: str, kind: str) -> ApiResource:
        """The resource serving `kind`; asks again after a miss, since CRDs appear at run time."""
        for fresh in (False, True):
            if fresh or api_version not in self._resources:
                self._resources[api_version] = self._discover(api_version)
            found = self._resources[api_version].get(kind)
            if found:
                return found
        raise NoKind(404, f'no matches for kind "{kind}" in version "{api_version}"', "NotFound")

    def _discover(self, api_version: str) -> dict[str, ApiResource]:
        path = "/api/" + api_version if "/" not in api_version else "/apis/" + api_version
        try:
            listing = self.request("GET", path)
        except ApiError as error:
            if error.status == 404:
                return {}
            raise
        return {
            r["kind"]: ApiResource(api_version, r["name"], r["namespaced"])
            for r in listing["resources"]
            if "/" not in r["name"]
        }

    # -- objects ---------------------------------------------------------------------------
    def path(self, obj: dict[str, Any], name: bool = True) -> str:
        meta = obj.get("metadata", {})
        resource = self.resource(obj["apiVersion"], obj["kind"])
        return resource.path(meta.get("namespace"), meta.get("name") if name else None)

    def apply(self, obj: dict[str, Any], *, field_manager: str, force: bool = True) -> dict[str, Any]:
        """Server-side apply, as pulumi-kubernetes does since v4."""
        return self.request(
            "PATCH",
            self.path(obj),
            params={"fieldManager": field_manager, "force": str(force).lower()},
            content=json.dumps(obj),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )

    def create(self, obj: dict[str, Any], field_manager: str = "") -> dict[str, Any]:
        params = {"fieldManager": field_manager} if field_manager else {}
        return self.request("POST", self.path(obj, name=False), json=obj, params=params)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self.request("GET", self.resource(api_version, kind).path(namespace, name))

    def exists(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        try:
            self.get(api_version, kind, name, namespace)
            return True
        except NoKind:
            return False
        except ApiError as error:
            if error.status == 404:
                return False
            raise

    def list(self, api_version: str, kind: str, namespace: str | None = None, **params) -> list[dict[str, Any]]:
        resource = self.resource(api_version, kind)
        path = resource.path(namespace) if namespace else resource.path(None)
        if resource.namespaced and not namespace:
            path = path.replace("/namespaces/default", "")
        return self.request("GET", path, params=params)["items"]

    def merge_patch(self, api_version: str, kind: str, name: str, patch: dict, namespace=None, subresource=""):
        path = self.resource(api_version, kind).path(namespace, name) + (f"/{subresource}" if subresource else "")
        return self.request(
            "PATCH", path, content=json.dumps(patch), headers={"Content-Type": "application/merge-patch+json"}
        )

    def can_i(self, user: str, groups: list[str], verb: str, resource: str, namespace: str, group: str = "") -> bool:
        """`kubectl auth can-i --as`, through a real SubjectAccessReview."""
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": [*groups, "system:authenticated"],
                "resourceAttributes": {"verb": verb, "resource": resource, "group": group, "namespace": namespace},
            },
        }
        result = self.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", json=review)
        return bool(result["status"].get("allowed"))
