"""Multi-user KFP's authentication and authorization, as the sandbox plays them (read from KFP 2.3.0 and 2.17.0).

Identity (auth/auth.go, authenticator_http_headers.go, authenticator_token_review.go, util.go): the
`kubeflow-userid` header (the header the Kubeflow manifests configure, with an empty prefix), else
`Authorization: Bearer <token>` checked by a TokenReview. Authorization (resource/resource_manager.go
IsAuthorized): one SubjectAccessReview for that user in the object's namespace, group `pipelines.kubeflow.org`,
version `v1beta1`, resource `pipelines` / `experiments` / `runs`. Without an identity the answer is 401
(Unauthenticated), a review that says no is 403 (PermissionDenied); both only where a check is made, after
the object was looked up (a missing object is still 404).

A `Policy` stands for the cluster's TokenReview and RBAC: `tokens` maps bearer tokens to identities (None:
every token is an identity of its own) and `bindings` grant verbs per identity and namespace (None: every
identity may do everything). The file given to `kfadapter sandbox --authz FILE` is
`{"tokens": {"<token>": "<identity>"}, "bindings": [{"identity", "namespace", "verbs": ["*"] | [...],
"resources"?: [...]}]}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GROUP, API_VERSION = "pipelines.kubeflow.org", "v1beta1"  # common/const.go RbacPipelinesGroup / Version
RESOURCES = frozenset({"pipelines", "experiments", "runs"})
# common/const.go RbacResourceVerb*: the verbs the API server asks about for these resources.
VERBS = frozenset(
    {
        "get",
        "list",
        "create",
        "update",
        "delete",
        "archive",
        "unarchive",
        "terminate",
        "retry",
        "readArtifact",
        "reportMetrics",
    }
)
USERID_HEADER = "kubeflow-userid"
POD_NAMESPACE = "kubeflow"  # common.GetPodNamespace(): where KFP itself runs
_HEADER_MISSING = "Request header error: there is no user identity header."
# auth.IdentityHeaderMissingError.Error(): NewUnauthenticatedError wraps its own text once more.
MISSING = f"Unauthenticated: {_HEADER_MISSING}: {_HEADER_MISSING}"
_REVIEW_FAILED = (
    "Authentication failure: Unauthenticated: Review.Status.Authenticated is false. Error [invalid bearer token]: "
    "Failed to authenticate token review"
)
_BEARER_PREFIX = "Bearer "


class PolicyError(ValueError):
    """The --authz file is not a policy; the message says what is wrong."""


@dataclass(frozen=True)
class Binding:
    """What one RoleBinding grants: verbs on resources for an identity in a namespace."""

    identity: str
    namespace: str
    verbs: frozenset[str]
    resources: frozenset[str]

    def allows(self, identity: str, namespace: str, resource: str, verb: str) -> bool:
        """Whether this binding lets `identity` do `verb` on `resource` in `namespace`."""
        return (
            self.identity == identity
            and self.namespace == namespace
            and ("*" in self.verbs or verb in self.verbs)
            and ("*" in self.resources or resource in self.resources)
        )


@dataclass(frozen=True)
class Policy:
    """The cluster's TokenReview (`tokens`) and RBAC (`bindings`); None means "anything goes" for that part."""

    tokens: Mapping[str, str] | None = None
    bindings: tuple[Binding, ...] | None = None

    @classmethod
    def load(cls, path: str) -> Policy:
        """Read a policy file (JSON); PolicyError names what is wrong."""
        try:
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
        except OSError as exc:
            raise PolicyError(f"cannot read {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise PolicyError(f"{path} is not JSON: {exc}") from None
        return cls.from_doc(doc)

    @classmethod
    def from_doc(cls, doc: Any) -> Policy:
        """Build a policy from its JSON document."""
        if not isinstance(doc, dict) or set(doc) - {"tokens", "bindings"}:
            raise PolicyError('the policy is an object with "tokens" and "bindings" only')
        tokens = doc.get("tokens", {})
        if not isinstance(tokens, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tokens.items()
        ):
            raise PolicyError('"tokens" maps bearer tokens to identities (strings)')
        raw = doc.get("bindings", [])
        if not isinstance(raw, list):
            raise PolicyError('"bindings" is a list')
        return cls(dict(tokens), tuple(_binding(b, i) for i, b in enumerate(raw)))

    def identity(self, headers: Mapping[str, str]) -> tuple[str | None, str]:
        """The caller's identity from lower-cased `headers` (as grpc metadata keys are), else (None, why) in the API
        server's words (the authenticators' errors)."""
        errors = []
        user = headers.get(USERID_HEADER)
        if user:
            return user, ""
        errors.append(MISSING)
        auth = headers.get("authorization")
        if auth is None:
            errors.append(MISSING)
        elif not auth.startswith(_BEARER_PREFIX):
            errors.append(f"Header 'Authorization' is incorrectly formatted. Expected prefix '{_BEARER_PREFIX}'")
        else:
            token = auth[len(_BEARER_PREFIX) :]
            if self.tokens is None and token:
                return token, ""
            if self.tokens is not None and token in self.tokens:
                return self.tokens[token], ""
            errors.append(_REVIEW_FAILED)
        return None, aggregate(errors)

    def allows(self, identity: str, namespace: str, resource: str, verb: str) -> bool:
        """The SubjectAccessReview's answer."""
        if self.bindings is None:
            return True
        return any(b.allows(identity, namespace, resource, verb) for b in self.bindings)


def _binding(doc: Any, index: int) -> Binding:
    where = f"bindings[{index}]"
    if not isinstance(doc, dict) or set(doc) - {"identity", "namespace", "verbs", "resources"}:
        raise PolicyError(f'{where} is an object with "identity", "namespace", "verbs" and optional "resources"')
    identity, namespace = doc.get("identity"), doc.get("namespace")
    if not isinstance(identity, str) or not identity or not isinstance(namespace, str):
        raise PolicyError(f'{where}: "identity" (non-empty) and "namespace" are strings')
    verbs = _names(doc.get("verbs"), VERBS, f"{where}.verbs")
    resources = _names(doc.get("resources", ["*"]), RESOURCES, f"{where}.resources")
    return Binding(identity, namespace, verbs, resources)


def _names(value: Any, allowed: frozenset[str], where: str) -> frozenset[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{where} is a non-empty list of strings")
    unknown = sorted(set(value) - allowed - {"*"})
    if unknown:
        raise PolicyError(f"{where}: unknown {', '.join(unknown)} (one of *, {', '.join(sorted(allowed))})")
    return frozenset(value)


def aggregate(errors: list[str]) -> str:
    """k8s utilerrors.NewAggregate(...).Error(): duplicates once, several in brackets."""
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def attributes(namespace: str, verb: str, resource: str, name: str, selectors: bool) -> str:
    """Go's %+v of the ResourceAttributes KFP asks about (k8s.io/api >= 0.31 adds the two selectors)."""
    extra = "FieldSelector:nil,LabelSelector:nil," if selectors else ""
    return (
        f"&ResourceAttributes{{Namespace:{namespace},Verb:{verb},Group:{GROUP},Version:{API_VERSION},"
        f"Resource:{resource},Subresource:,Name:{name},{extra}}}"
    )


def unauthenticated(why: str) -> str:
    """IsAuthorized's error without an identity (grpc code 16)."""
    return f"Unauthenticated: Failed to check authorization. User identity is empty in the request header: {why}"


def denied(identity: str, attrs: str) -> str:
    """IsAuthorized's error when the review says no (grpc code 7); RBAC gives no reason."""
    return (
        f"PermissionDenied: User '{identity}' is not authorized with reason:  (request: {attrs}): Unauthorized access"
    )
