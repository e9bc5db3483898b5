"""Pure: what multi-user KFP's authorization refusal says, turned into the adapter's 403 `kfp_forbidden`.

KFP writes the SubjectAccessReview it lost into its message (resource/resource_manager.go IsAuthorized):
`User '<identity>' is not authorized with reason: ... (request: &ResourceAttributes{Namespace:<ns>,Verb:<verb>,
Group:pipelines.kubeflow.org,Version:v1beta1,Resource:<resource>,...})`. The grpc answers carry it with 403; an
upload carries it in a 400 up to KFP 2.14 and answers a bare "Failed to create a pipeline (version)" from 2.15
(server/pipeline_upload_server.go). Only the namespace, verb, resource and identity are kept, never the rest.
"""

from __future__ import annotations

import re

from kfadapter.core.errors import KfpForbidden

EDIT_ROLE = "kubeflow-pipelines-edit"  # KFP's ClusterRole granting every verb the adapter uses
_ATTRIBUTES = re.compile(r"&ResourceAttributes\{Namespace:([^,]*),Verb:([^,]*),.*?Resource:([^,]*),")
_USER = re.compile(r"User '([^']*)' is not authorized")
_SERVICE_ACCOUNT = re.compile(r"^system:serviceaccount:([^:]+):([^:]+)$")
BARE_UPLOAD_REFUSALS = frozenset({"Failed to create a pipeline", "Failed to create a pipeline version"})


def parse(message: str) -> tuple[str, str, str, str | None] | None:
    """(namespace, verb, resource, identity) of a refusal KFP describes, else None."""
    match = _ATTRIBUTES.search(message)
    if match is None:
        return None
    user = _USER.search(message)
    return match.group(1), match.group(2), match.group(3), user.group(1) if user else None


def forbidden(what: str, namespace: str, verb: str, resource: str, identity: str | None) -> KfpForbidden:
    """The 403 naming the namespace, the verb and the RoleBinding that would allow it."""
    who = identity or "the adapter's ServiceAccount"
    subject = _subject(identity)
    binding = f"kubectl create rolebinding kfadapter-pipelines-edit -n {namespace} --clusterrole={EDIT_ROLE} {subject}"
    return KfpForbidden(
        f"{what}: KFP refused {who} the verb {verb!r} on {resource} in namespace {namespace!r}. Bind the ClusterRole "
        f"{EDIT_ROLE} (or a Role granting {verb!r} on {resource}.pipelines.kubeflow.org) to the adapter's "
        f"ServiceAccount in {namespace!r} with a RoleBinding",
        details={
            "namespace": namespace,
            "verb": verb,
            "resource": resource,
            "api_group": "pipelines.kubeflow.org",
            "identity": identity,
            "cluster_role": EDIT_ROLE,
            "role_binding": binding,
        },
    )


def from_message(what: str, message: str) -> KfpForbidden | None:
    """The 403 for a refusal KFP describes, else None."""
    parsed = parse(message)
    return forbidden(what, *parsed) if parsed is not None else None


def _subject(identity: str | None) -> str:
    match = _SERVICE_ACCOUNT.match(identity or "")
    if match is not None:
        return f"--serviceaccount={match.group(1)}:{match.group(2)}"
    return f"--user={identity}" if identity else "--serviceaccount=<namespace>:<service account>"
