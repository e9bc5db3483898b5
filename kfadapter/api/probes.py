"""`kfadapter check` and `GET /readiness?deep=true`: try every dependency the way the service uses it.

Each probe does what a request or the watcher will do, once, under a timeout: KFP's healthz through the
configured door, a one-run list in the namespace (the token and RoleBinding a multi-user KFP checks), an ML
Metadata lookup, a read from the object store's bucket with the adapter's keys, an OPTIONS request to the training
manager's notification URL, and a write to the store. A failure carries what was tried, what answered and the fix.
The probes run at once in threads, so the whole check takes about as long as the slowest one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import requests

from kfadapter.core.errors import AdapterError, NotFound
from kfadapter.kfconnect import KfConnect
from kfadapter.outputs.mlmd import MlmdClient
from kfadapter.outputs.objectstore import ObjectStore
from kfadapter.settings import Settings
from kfadapter.watch.store import Store

OK, FAIL, SKIP = "ok", "fail", "skip"
NAMES = ("kfp", "kfp-access", "mlmd", "object-store", "training-manager", "store")


@dataclass
class Result:
    """One probe's outcome: `status` is ok, fail or skip (nothing to try: the dependency is not configured)."""

    name: str
    target: str
    status: str
    detail: str
    fix: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data."""
        return asdict(self)


@dataclass
class Dependencies:
    """The clients the probes use: the service's own in deep readiness, fresh ones in `kfadapter check`."""

    settings: Settings
    kf: KfConnect | None
    store: Callable[[], Store]
    mlmd: MlmdClient
    objects: ObjectStore | None
    timeout: float


def for_settings(settings: Settings, timeout: float) -> Dependencies:
    """Build fresh clients from the settings, every timeout capped at `timeout` seconds."""
    capped = replace(
        settings,
        kfp_connect_timeout=min(settings.kfp_connect_timeout, timeout),
        kfp_read_timeout=min(settings.kfp_read_timeout, timeout),
    )
    objects = None
    if settings.object_store_endpoint:
        objects = ObjectStore(
            settings.object_store_endpoint,
            settings.object_store_access_key,
            settings.object_store_secret_key,
            region=settings.object_store_region,
            timeout=(min(5.0, timeout), min(settings.object_store_timeout, timeout)),
        )
    return Dependencies(
        settings=settings,
        kf=KfConnect(capped) if settings.kfp_endpoint else None,
        store=lambda: Store(settings.store_url or settings.store_path),
        mlmd=MlmdClient(settings.mlmd_endpoint, min(settings.mlmd_timeout, timeout)),
        objects=objects,
        timeout=timeout,
    )


def run_all(deps: Dependencies) -> list[Result]:
    """Run every probe at once; return the results in a fixed order (KFP, its access, MLMD, objects, TM, store)."""
    groups = [
        ("kfp", _kfp),
        ("mlmd", _mlmd),
        ("object-store", _object_store),
        ("training-manager", _training_manager),
        ("store", _store),
    ]
    with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="kfadapter-check") as pool:
        futures = [pool.submit(_guarded, name, group, deps) for name, group in groups]
        results = [r for f in futures for r in f.result()]
    return sorted(results, key=lambda r: NAMES.index(r.name))


def failed(results: list[Result]) -> list[Result]:
    """Return the failed results."""
    return [r for r in results if r.status == FAIL]


def _guarded(name: str, group: Callable[[Dependencies], list[Result]], deps: Dependencies) -> list[Result]:
    try:
        return group(deps)
    except Exception as exc:  # a probe must report, never take the check down
        return [Result(name, "", FAIL, f"the probe itself failed ({type(exc).__name__}: {exc})")]


def _timed(name: str, target: str, probe: Callable[[], tuple[str, str, str]]) -> Result:
    start = time.monotonic()
    status, detail, fix = probe()
    return Result(name, target, status, detail, fix, round(time.monotonic() - start, 3))


# ---- KFP ----------------------------------------------------------------------------------------------------


_DOORS = {"api_server": "the API server", "ui_proxy": "the UI proxy"}


def _door(endpoint: str) -> str:
    return "the UI proxy" if urlsplit(endpoint).path.rstrip("/").endswith("/pipeline") else "the API server"


def _kfp(deps: Dependencies) -> list[Result]:
    s = deps.settings
    if deps.kf is None or not s.kfp_endpoint:
        fix = "set KFADAPTER_KFP_ENDPOINT, or KUBEFLOW_HOST and KUBEFLOW_PORT as O-RAN's ConfigMap does"
        return [
            Result("kfp", "", FAIL, "no KFP endpoint configured", fix),
            Result("kfp-access", "", SKIP, "needs a KFP endpoint"),
        ]
    kf, endpoint = deps.kf, s.kfp_endpoint
    health: dict = {}

    def healthz() -> tuple[str, str, str]:
        try:
            health.update(kf.health_summary())  # through the UI proxy too: the API server behind it must answer
        except AdapterError as exc:
            return FAIL, exc.message, _kfp_fix(exc, endpoint)
        version = f"KFP {health.get('version') or '(version unknown)'} (from {health.get('version_from')})"
        door = _DOORS.get(str(health.get("door")), _door(endpoint))
        mode = "multi-user" if health.get("multi_user") else "single-user"
        return OK, f"{version} through {door}, {mode} mode", ""

    first = _timed("kfp", f"{endpoint} (healthz)", healthz)
    target = f"{endpoint} (list runs in namespace {s.namespace!r})"
    if first.status != OK:
        return [first, Result("kfp-access", target, SKIP, "KFP did not answer healthz")]

    def access() -> tuple[str, str, str]:
        try:
            count = kf.probe_access()
        except AdapterError as exc:
            return FAIL, exc.message, _access_fix(exc, s, bool(health.get("multi_user")))
        who = "with the token" if (s.kfp_token or s.kfp_token_file) else "without a token"
        return OK, f"listed runs {who}: {count} run(s) in namespace {s.namespace!r}", ""

    return [first, _timed("kfp-access", target, access)]


def _kfp_fix(exc: AdapterError, endpoint: str) -> str:
    if exc.details.get("cause") == "kfp_api_server_not_ready":
        return "KFP's UI proxy answers but its API server does not: see the ml-pipeline pod in KFP's namespace"
    if exc.code == "kfp_misconfigured" or exc.details.get("cause") == "kfp_misconfigured":
        return (
            "point KFADAPTER_KFP_ENDPOINT at the API server (http://ml-pipeline.kubeflow:8888) or at the UI proxy "
            "with its prefix (http://ml-pipeline-ui.kubeflow/pipeline; O-RAN: KUBEFLOW_HOST/KUBEFLOW_PORT)"
        )
    host = urlsplit(endpoint).netloc
    return (
        f"make {host} reachable from the adapter: check the host and port (KFADAPTER_KFP_ENDPOINT or "
        "KUBEFLOW_HOST/KUBEFLOW_PORT), DNS, NetworkPolicies and that KFP's pods are running"
    )


def _access_fix(exc: AdapterError, s: Settings, multi_user: bool) -> str:
    if exc.code == "kfp_forbidden":  # KFP named the namespace and verb it refused
        return (
            f"{exc.details.get('role_binding')} (the chart: rbac.kfpRoleBinding.create=true, as in "
            "values-kubeflow-multiuser.yaml)"
        )
    status = exc.details.get("kfp_status")
    if status == 401:
        return (
            "KFP did not accept the adapter's identity: give it a token with audience pipelines.kubeflow.org (the "
            "chart's kubeflow.serviceAccountToken.enabled, or KFADAPTER_KFP_TOKEN / KFADAPTER_KFP_TOKEN_FILE)"
        )
    if status == 403:
        return (
            f"the adapter's identity may not list runs in namespace {s.namespace!r}: bind its ServiceAccount to "
            f"the ClusterRole kubeflow-pipelines-edit in {s.namespace!r} (values-kubeflow-multiuser.yaml renders "
            "that RoleBinding), or set KFADAPTER_NAMESPACE to the profile namespace it may use"
        )
    if multi_user and not (s.kfp_token or s.kfp_token_file):
        return "KFP runs in multi-user mode: give the adapter a token (KFADAPTER_KFP_TOKEN_FILE, projected)"
    return "see the message: KFP refused a list of runs, which every run route needs"


# ---- ML Metadata --------------------------------------------------------------------------------------------


def _mlmd(deps: Dependencies) -> list[Result]:
    endpoint = deps.settings.mlmd_endpoint

    def lookup() -> tuple[str, str, str]:
        try:
            deps.mlmd.run_context_id("kfadapter-check")
        except NotFound:
            return OK, "answered a run-context lookup (v2 run outputs are read this way)", ""
        except AdapterError as exc:
            return (
                FAIL,
                exc.message,
                (
                    f"make ML Metadata's gRPC service reachable at {endpoint} (KFADAPTER_MLMD_ENDPOINT; in KFP "
                    "metadata-grpc-service.kubeflow:8080): check DNS, the port and NetworkPolicies"
                ),
            )
        return OK, "answered a run-context lookup", ""

    return [_timed("mlmd", f"{endpoint} (gRPC)", lookup)]


# ---- object store -------------------------------------------------------------------------------------------


def _object_store(deps: Dependencies) -> list[Result]:
    s, objects = deps.settings, deps.objects
    if objects is None:
        detail = "KFADAPTER_OBJECT_STORE_ENDPOINT not set: v2 artifacts are listed by URI, without their contents"
        return [Result("object-store", "", SKIP, detail)]
    target = f"{objects.endpoint} (bucket {s.object_store_bucket!r})"

    def read() -> tuple[str, str, str]:
        try:
            return OK, objects.probe(s.object_store_bucket), ""
        except AdapterError as exc:
            return FAIL, exc.message, _object_store_fix(exc, s)

    return [_timed("object-store", target, read)]


def _object_store_fix(exc: AdapterError, s: Settings) -> str:
    if exc.code == "object_store_misaddressed":
        return (
            f"point KFADAPTER_OBJECT_STORE_ENDPOINT at the store KFP writes to (bucket {s.object_store_bucket!r}, "
            "KFADAPTER_OBJECT_STORE_BUCKET); for LeoFS use a host it registered, e.g. http://leofs.kubeflow:8080"
        )
    if exc.code == "object_store_denied":
        return (
            "set KFADAPTER_OBJECT_STORE_ACCESS_KEY / _SECRET_KEY to the keys KFP uses (secret "
            "mlpipeline-minio-artifact, keys accesskey/secretkey; O-RAN's LeoFS: access key leofs, secret key "
            "the password in leofs-secret) and KFADAPTER_OBJECT_STORE_REGION if the store checks one"
        )
    return (
        "make the object store reachable at KFADAPTER_OBJECT_STORE_ENDPOINT (KFP >= 2.15: "
        "http://seaweedfs.kubeflow:9000; older: http://minio-service.kubeflow:9000; O-RAN: http://leofs.kubeflow:8080)"
        "; check NetworkPolicies (KFP >= 2.15 admits only some namespaces to SeaweedFS)"
    )


# ---- training manager -----------------------------------------------------------------------------------------


def _training_manager(deps: Dependencies) -> list[Result]:
    url = deps.settings.tm_url
    if not url:
        fix = "set TRAININGMGR_HOST and TRAININGMGR_PORT (O-RAN: tm.traininghost, 32002) or KFADAPTER_TM_URL"
        return [
            Result("training-manager", "", FAIL, "no training manager URL: notifications are queued, not sent", fix)
        ]

    def options() -> tuple[str, str, str]:
        # OPTIONS sends no notification: a route that takes POST answers it (Flask: 200 with Allow); a wrong path 404.
        try:
            resp = requests.options(url, timeout=(min(5.0, deps.timeout), deps.timeout), allow_redirects=False)
        except requests.RequestException as exc:
            return (
                FAIL,
                f"no answer from {urlsplit(url).netloc} ({type(exc).__name__})",
                (
                    "make the training manager reachable: TRAININGMGR_HOST / TRAININGMGR_PORT (or KFADAPTER_TM_URL), "
                    "DNS, NetworkPolicies"
                ),
            )
        resp.close()
        if resp.status_code == 404:
            return (
                FAIL,
                f"HTTP 404 for {urlsplit(url).path}: nothing serves notifications there",
                ("point KFADAPTER_TM_URL at the training manager's /trainingjob/pipelineNotification"),
            )
        if resp.status_code in (405, 501):  # a server that does not take OPTIONS: it answered, the path is unproven
            return (
                OK,
                f"HTTP {resp.status_code} to OPTIONS: the host answers (the path is checked at the first POST)",
                "",
            )
        if resp.status_code >= 500:
            return FAIL, f"HTTP {resp.status_code}", "the training manager answers with a server error: see its log"
        allow = resp.headers.get("Allow", "")
        said = f" (Allow: {allow})" if allow else ""
        return OK, f"HTTP {resp.status_code}{said}: the notification URL exists", ""

    return [_timed("training-manager", f"{url} (OPTIONS)", options)]


# ---- the store ------------------------------------------------------------------------------------------------


def _store(deps: Dependencies) -> list[Result]:
    s = deps.settings
    target = "PostgreSQL (KFADAPTER_STORE_URL)" if s.store_url else f"SQLite {s.store_path}"

    def query() -> tuple[str, str, str]:
        try:
            store = deps.store()
            store.check_writable()  # the watcher and executions write: a full disk fails here, not at a run's end
        except Exception as exc:  # SQLAlchemy, OS and migration errors alike
            message = exc.message if isinstance(exc, AdapterError) else f"{type(exc).__name__}: {exc}"
            return (
                FAIL,
                message.splitlines()[0][:300],
                (
                    "check KFADAPTER_STORE_URL (host, database, user, password) and that PostgreSQL runs"
                    if s.store_url
                    else f"make the directory of {s.store_path} writable (the chart mounts a volume at /data)"
                ),
            )
        return OK, f"{store.backend} took a write (schema up to date)", ""

    return [_timed("store", target, query)]
