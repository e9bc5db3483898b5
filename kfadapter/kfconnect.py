"""KfConnect: the one place that talks to Kubeflow Pipelines, through `kfp.Client`.

Every call carries a `(connect, read)` timeout and every kfp / urllib3 failure is translated once into a
domain error (404 → NotFound, 409 → Conflict, other 4xx → KfpRejected with KFP's message only,
5xx / connection → KfpUnavailable, timeout → KfpTimeout). Results are plain dicts with KFP's own JSON field
names: responses are read raw (`_preload_content=False`) so no `V2beta1*` model ever leaves this module.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import uuid
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import quote

import kfp
import kfp_server_api
import urllib3
from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials
from kfp_server_api.exceptions import ApiException

from . import pipelines as pl
from .errors import (AdapterError, Conflict, KfpRejected, KfpTimeout, KfpUnavailable, NotFound, NotReady,
                     PayloadTooLarge)
from .observability import kfp_call
from .settings import Settings

log = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"})
UNFINISHED_TIME = "1970-01-01T00:00:00Z"
PAGE_SIZE = 200  # KFP silently caps page_size at 200
_MAX_PAGES = 10_000  # a server that never stops handing out tokens must not loop us forever
_PLACEHOLDER_NAMESPACE = "kfadapter-placeholder"


class KfConnect:
    """Wrap `kfp.Client` with timeouts, paging, error translation and the adapter's KFP workflows."""

    def __init__(self, settings: Settings) -> None:
        if not settings.kfp_endpoint:
            raise ValueError("KfConnect needs settings.kfp_endpoint")
        self.settings = settings
        self._client: kfp.Client | None = None
        self._client_lock = threading.Lock()
        self._timeout = (settings.kfp_connect_timeout, settings.kfp_read_timeout)
        self._upload_timeout = (settings.kfp_connect_timeout, settings.kfp_upload_timeout)

    # ---- client and transport -------------------------------------------------------------------------

    @property
    def client(self) -> kfp.Client:
        """Return the lazily built `kfp.Client` (built on first use, never at import or app creation)."""
        if self._client is None:
            with self._client_lock:  # construction does no I/O (see _build_client), so this is brief
                if self._client is None:
                    self._client = self._build_client()
        return self._client

    def _build_client(self) -> kfp.Client:
        s = self.settings
        kwargs: dict[str, Any] = {"host": s.kfp_endpoint, "ssl_ca_cert": s.kfp_ca_cert}
        if s.kfp_token:
            kwargs["existing_token"] = s.kfp_token
        elif s.kfp_token_file:
            # Re-reads the projected token on every request, so rotation needs no restart.
            kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(path=s.kfp_token_file)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            # With namespace '' or 'kubeflow' and no local context file the constructor polls healthz
            # up to 5 times, 5 s apart. A placeholder namespace skips that; the real one is set right after.
            client = kfp.Client(namespace=_PLACEHOLDER_NAMESPACE, **kwargs)
        client._context_setting["namespace"] = s.namespace
        config = client._existing_config
        # urllib3 retries 3 times by default, multiplying every timeout; retry only a refused connect once.
        config.retries = urllib3.Retry(total=1, connect=1, read=0, status=0, other=0, redirect=0)
        client._run_api.api_client.rest_client = kfp_server_api.rest.RESTClientObject(config)
        return client

    @property
    def _api_client(self) -> kfp_server_api.ApiClient:
        return self.client._run_api.api_client

    @contextmanager
    def _kfp(self, operation: str, what: str) -> Iterator[None]:
        """Count and time one KFP call and translate its failure once."""
        with kfp_call(operation):
            try:
                yield
            except ApiException as exc:
                raise translate_api_exception(exc, what) from None
            except urllib3.exceptions.HTTPError as exc:
                raise translate_transport_error(exc, what) from None

    def _call(self, fn: Callable[..., Any], *args: Any, what: str, timeout: tuple | None = None,
              **kwargs: Any) -> dict:
        """Run one generated API method with a timeout and translate its failure; return the JSON body."""
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        with self._kfp(fn.__name__, what):
            resp = fn(*args, _preload_content=False, _request_timeout=timeout or self._timeout, **kwargs)
            return _read_json(resp)

    def _call_path(self, path: str, method: str, *, what: str, body: Any = None,
                   timeout: tuple | None = None, operation: str = "call_api") -> dict:
        """Call a REST path that kfp-server-api has no method for, keeping host, auth and TLS settings."""
        with self._kfp(operation, what):
            resp = self._api_client.call_api(
                path, method, header_params={"Accept": "application/json", "Content-Type": "application/json"},
                body=body, auth_settings=["Bearer"], _return_http_data_only=True, _preload_content=False,
                _request_timeout=timeout or self._timeout)
            return _read_json(resp)

    def _list_all(self, fn: Callable[..., Any], key: str, *args: Any, what: str, **kwargs: Any) -> list[dict]:
        """Follow `next_page_token` to the end; KFP omits the key for an empty list."""
        items: list[dict] = []
        token = None
        for _ in range(_MAX_PAGES):
            page = self._call(fn, *args, what=what, page_size=PAGE_SIZE, page_token=token, **kwargs)
            items.extend(page.get(key) or [])
            token = page.get("next_page_token")
            if not token:
                return items
        raise KfpUnavailable(f"{what}: KFP kept returning page tokens after {_MAX_PAGES} pages")

    # ---- health -----------------------------------------------------------------------------------------

    def health(self) -> dict:
        """Return KFP's healthz answer; raise NotReady (503) when KFP does not give one."""
        api = self.client._healthz_api
        try:
            return self._call(api.healthz_service_get_healthz, what="KFP health check")
        except AdapterError as exc:
            raise NotReady(exc.message, details={"cause": exc.code}) from None

    # ---- pipelines ----------------------------------------------------------------------------------------

    def find_pipeline(self, name: str) -> dict:
        """Return the pipeline with this exact name (not display-name filtering, which is not unique)."""
        api = self.client._pipelines_api
        try:
            return self._call(api.pipeline_service_get_pipeline_by_name, name, namespace=self._namespace,
                              what=f"pipeline {name!r}")
        except NotFound:
            raise NotFound(f"pipeline {name!r} not found", code="pipeline_not_found",
                           details={"pipeline_name": name}) from None

    def get_pipeline(self, pipeline_id: str) -> dict:
        """Return one pipeline by id."""
        api = self.client._pipelines_api
        try:
            return self._call(api.pipeline_service_get_pipeline, pipeline_id, what=f"pipeline {pipeline_id!r}")
        except NotFound:
            raise NotFound(f"pipeline {pipeline_id!r} not found", code="pipeline_not_found",
                           details={"pipeline_id": pipeline_id}) from None

    def list_pipelines(self) -> list[dict]:
        """Return every pipeline, oldest first."""
        api = self.client._pipelines_api
        items = self._list_all(api.pipeline_service_list_pipelines, "pipelines", namespace=self._namespace,
                               what="list pipelines")
        return sorted(items, key=lambda p: (p.get("created_at") or "", p.get("display_name") or ""))

    def pipeline_names(self, pipeline_ids: Iterable[str]) -> dict[str, str | None]:
        """Return id -> display name for each pipeline id (None for a deleted one): one call per id."""
        names: dict[str, str | None] = {}
        for pid in pipeline_ids:
            try:
                names[pid] = self.get_pipeline(pid).get("display_name")
            except NotFound:
                names[pid] = None
        return names

    def list_versions(self, pipeline_id: str) -> list[dict]:
        """Return every version of a pipeline in numeric order ("name", "2", "3", ...)."""
        api = self.client._pipelines_api
        try:
            items = self._list_all(api.pipeline_service_list_pipeline_versions, "pipeline_versions", pipeline_id,
                                   what=f"versions of pipeline {pipeline_id!r}")
        except NotFound:
            raise NotFound(f"pipeline {pipeline_id!r} not found", code="pipeline_not_found",
                           details={"pipeline_id": pipeline_id}) from None
        return sorted(items, key=pl.version_sort_key)

    def get_version(self, pipeline_id: str, version_id: str) -> dict:
        """Return one pipeline version, with its `pipeline_spec`."""
        api = self.client._pipelines_api
        try:
            return self._call(api.pipeline_service_get_pipeline_version, pipeline_id, version_id,
                              what=f"pipeline version {version_id!r}")
        except NotFound:
            raise NotFound(f"version {version_id!r} of pipeline {pipeline_id!r} not found",
                           code="version_not_found",
                           details={"pipeline_id": pipeline_id, "version_id": version_id}) from None

    def find_version(self, pipeline: dict, version_name: str | None) -> dict:
        """Return the pipeline's version with this name, or the newest when the name is empty or 'latest'."""
        versions = self.list_versions(pipeline["pipeline_id"])
        if not versions:
            raise NotFound(f"pipeline {pipeline.get('display_name')!r} has no versions", code="version_not_found")
        if version_name in (None, "", "latest"):
            return max(versions, key=lambda v: (v.get("created_at") or "", pl.version_sort_key(v)))
        for v in versions:
            if version_name in (v.get("display_name"), v.get("name")):
                return v
        raise NotFound(f"version {version_name!r} of pipeline {pipeline.get('display_name')!r} not found",
                       code="version_not_found",
                       details={"pipeline_name": pipeline.get("display_name"), "pipeline_version": version_name})

    def version_spec(self, version: dict) -> dict | None:
        """Return a version's `pipeline_spec`, fetching the version when a listing left it out."""
        spec = version.get("pipeline_spec")
        if spec is None:
            spec = self.get_version(version["pipeline_id"], version["pipeline_version_id"]).get("pipeline_spec")
        return spec

    def upload(self, name: str, data: bytes, package: pl.Package, description: str | None) -> dict:
        """Upload a package: create pipeline `name`, or add the next numbered version to it."""
        with tempfile.TemporaryDirectory(prefix="kfadapter-upload-") as tmp:
            # KFP picks the parser by file extension; the file name never comes from the caller.
            path = os.path.join(tmp, "pipeline" + package.suffix)
            with open(path, "wb") as fh:
                fh.write(data)
            try:
                pipeline = self.find_pipeline(name)
            except NotFound:
                created = self._upload_new_pipeline(name, path, description)
                if created is not None:
                    return created
                pipeline = self.find_pipeline(name)  # another upload created it first
            return self._upload_next_version(pipeline, path, description)

    def _upload_new_pipeline(self, name: str, path: str, description: str | None) -> dict | None:
        api = self.client._upload_api
        try:
            pipeline = self._call(api.upload_pipeline, path, name=name, display_name=name,
                                  description=description or None, namespace=self._namespace,
                                  what=f"upload of pipeline {name!r}", timeout=self._upload_timeout)
        except Conflict:
            return None
        versions = self.list_versions(pipeline["pipeline_id"])
        first = versions[0] if versions else {}
        return _upload_result(pipeline["pipeline_id"], name, first.get("pipeline_version_id"),
                              first.get("display_name") or name, created=True)

    def _upload_next_version(self, pipeline: dict, path: str, description: str | None) -> dict:
        api = self.client._upload_api
        pid = pipeline["pipeline_id"]
        names = [v.get("display_name") or v.get("name") for v in self.list_versions(pid)]
        number = pl.next_version_number(names)
        for _ in range(self.settings.upload_attempts):
            try:
                version = self._call(api.upload_pipeline_version, path, name=str(number), display_name=str(number),
                                     pipelineid=pid, description=description or None,
                                     what=f"upload of version {number} of pipeline {pipeline.get('display_name')!r}",
                                     timeout=self._upload_timeout)
            except Conflict:
                number += 1  # a concurrent upload took this number: KFP's 409 is the arbiter
                continue
            return _upload_result(pid, pipeline.get("display_name"), version.get("pipeline_version_id"),
                                  str(number), created=False)
        raise Conflict(f"no free version number for pipeline {pipeline.get('display_name')!r} after "
                       f"{self.settings.upload_attempts} attempts; retry the upload", code="version_conflict")

    def delete_pipeline(self, pipeline_id: str) -> dict:
        """Delete a pipeline and all its versions (cascade; versions first on backends without cascade)."""
        pipeline = self.get_pipeline(pipeline_id)
        api = self.client._pipelines_api
        what = f"delete of pipeline {pipeline_id!r}"
        try:
            self._call(api.pipeline_service_delete_pipeline, pipeline_id, cascade=True, what=what)
        except KfpRejected as exc:
            if "version" not in exc.message.lower():
                raise
            # Backends before 2.14 ignore `cascade` and refuse while versions exist.
            for version in self.list_versions(pipeline_id):
                self.delete_version(pipeline_id, version["pipeline_version_id"])
            self._call(api.pipeline_service_delete_pipeline, pipeline_id, what=what)
        return {"id": pipeline_id, "name": pipeline.get("display_name"), "status": "Deleted"}

    def delete_version(self, pipeline_id: str, version_id: str) -> dict:
        """Delete one pipeline version."""
        api = self.client._pipelines_api
        try:
            self._call(api.pipeline_service_delete_pipeline_version, pipeline_id, version_id,
                       what=f"delete of version {version_id!r}")
        except NotFound:
            raise NotFound(f"version {version_id!r} of pipeline {pipeline_id!r} not found",
                           code="version_not_found") from None
        return {"id": version_id, "pipeline_id": pipeline_id, "status": "Deleted"}

    # ---- experiments --------------------------------------------------------------------------------------

    def list_experiments(self) -> list[dict]:
        """Return every experiment."""
        api = self.client._experiment_api
        return self._list_all(api.experiment_service_list_experiments, "experiments", namespace=self._namespace,
                              what="list experiments")

    def find_experiment(self, name: str) -> dict:
        """Return the experiment with this display name."""
        api = self.client._experiment_api
        page = self._call(api.experiment_service_list_experiments, namespace=self._namespace, page_size=1,
                          filter=_equals_filter("display_name", name), what=f"experiment {name!r}")
        for exp in page.get("experiments") or []:
            if exp.get("display_name") == name:
                return exp
        raise NotFound(f"experiment {name!r} not found", code="experiment_not_found",
                       details={"experiment_name": name})

    # ---- runs ---------------------------------------------------------------------------------------------

    def execute(self, trainingjob_id: str, pipeline_name: str, version_name: str | None, experiment_name: str,
                arguments: dict[str, Any]) -> dict:
        """Start a training run of a pipeline version with arguments mapped onto its parameters."""
        pipeline = self.find_pipeline(pipeline_name)
        version = self.find_version(pipeline, version_name)
        spec = self.version_spec(version)
        kind = pl.spec_kind(spec) or pl.V2
        plan = pl.build_arguments(pl.parameters_of(spec), arguments, trainingjob_id=trainingjob_id,
                                  mapping=self.settings.argument_mapping, kind=kind)
        experiment = self.find_experiment(experiment_name)
        run_name = f"{trainingjob_id}-{datetime.now(timezone.utc):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
        description = f"training job {trainingjob_id}"
        if kind == pl.V1:
            run_id = self._create_v1_run(run_name, description, experiment["experiment_id"],
                                         version["pipeline_version_id"], plan.values)
        else:
            run_id = self._create_v2_run(run_name, description, experiment["experiment_id"],
                                         pipeline["pipeline_id"], version["pipeline_version_id"], plan.values)
        return {
            "trainingjob_id": trainingjob_id,
            "run_id": run_id,
            "run_name": run_name,
            "experiment_name": experiment_name,
            "experiment_id": experiment["experiment_id"],
            "pipeline_name": pipeline_name,
            "pipeline_id": pipeline["pipeline_id"],
            "pipeline_version": version.get("display_name") or version.get("name"),
            "pipeline_version_id": version["pipeline_version_id"],
            "pipeline_kind": kind,
            "parameters": plan.values,
            "derived_arguments": plan.derived,
            "ignored_arguments": plan.ignored,
            "run_status": "scheduled",
        }

    def _create_v2_run(self, name: str, description: str, experiment_id: str, pipeline_id: str,
                       version_id: str, parameters: dict[str, Any]) -> str:
        body = {
            "display_name": name,
            "description": description,
            "experiment_id": experiment_id,
            "pipeline_version_reference": {"pipeline_id": pipeline_id, "pipeline_version_id": version_id},
            "runtime_config": {"parameters": parameters},
        }
        api = self.client._run_api
        run = self._call(api.run_service_create_run, body, what=f"create run {name!r}")
        return run["run_id"]

    def _create_v1_run(self, name: str, description: str, experiment_id: str, version_id: str,
                       parameters: dict[str, str]) -> str:
        # The v2beta1 create-run silently drops parameters of v1 (Argo) versions (kubeflow/pipelines#10346).
        body = {
            "name": name,
            "description": description,
            "pipeline_spec": {"parameters": [{"name": k, "value": v} for k, v in parameters.items()]},
            "resource_references": [
                {"key": {"type": "EXPERIMENT", "id": experiment_id}, "relationship": "OWNER"},
                {"key": {"type": "PIPELINE_VERSION", "id": version_id}, "relationship": "CREATOR"},
            ],
        }
        answer = self._call_path("/apis/v1beta1/runs", "POST", body=body, what=f"create v1 run {name!r}",
                                 operation="v1beta1_create_run")
        return (answer.get("run") or {})["id"]

    def get_run(self, run_id: str) -> dict:
        """Return one run."""
        api = self.client._run_api
        try:
            return self._call(api.run_service_get_run, run_id, what=f"run {run_id!r}")
        except NotFound:
            raise NotFound(f"run {run_id!r} not found", code="run_not_found", details={"run_id": run_id}) from None

    def list_runs(self) -> list[dict]:
        """Return every run, newest first."""
        api = self.client._run_api
        return self._list_all(api.run_service_list_runs, "runs", namespace=self._namespace,
                              sort_by="created_at desc", what="list runs")

    def runs_by_ids(self, run_ids: Iterable[str]) -> list[dict]:
        """Return the runs among `run_ids` that KFP knows, one list call per 200 ids."""
        api = self.client._run_api
        ids = list(dict.fromkeys(run_ids))
        found: list[dict] = []
        for start in range(0, len(ids), PAGE_SIZE):
            chunk = ids[start:start + PAGE_SIZE]
            found.extend(self._list_all(api.run_service_list_runs, "runs", namespace=self._namespace,
                                        filter=_in_filter("run_id", chunk), what="list runs by id"))
        return found

    def terminate_run(self, run_id: str) -> dict:
        """Terminate a run unless it already finished; return the run as it is afterwards."""
        run = self.get_run(run_id)
        if run.get("state") in TERMINAL_STATES:
            return run | {"terminated": False}
        api = self.client._run_api
        try:
            self._call(api.run_service_terminate_run, run_id, what=f"terminate run {run_id!r}")
        except NotFound:
            raise NotFound(f"run {run_id!r} not found", code="run_not_found", details={"run_id": run_id}) from None
        return self.get_run(run_id) | {"terminated": True}

    # ---- run outputs (v1 runs: the Argo workflow and its artifacts) -------------------------------------

    def workflow(self, run_id: str) -> dict | None:
        """Return the run's Argo workflow (v1beta1 `pipeline_runtime.workflow_manifest`); None while it has none."""
        try:
            detail = self._call_path(f"/apis/v1beta1/runs/{_segment(run_id)}", "GET", what=f"run {run_id!r}",
                                     operation="v1beta1_get_run")
        except NotFound:
            raise NotFound(f"run {run_id!r} not found", code="run_not_found", details={"run_id": run_id}) from None
        manifest = (detail.get("pipeline_runtime") or {}).get("workflow_manifest")
        if not manifest:
            return None
        try:
            workflow = json.loads(manifest)
        except ValueError:
            raise KfpUnavailable(f"run {run_id!r}: KFP's workflow manifest is not JSON") from None
        return workflow if isinstance(workflow, dict) else None

    def read_artifact(self, run_id: str, node_id: str, name: str) -> KfpStream:
        """Open KFP's `:read` answer `{"data": "<base64>"}` for one node's artifact as a stream, not loaded whole."""
        # Not in kfp-server-api >= 2.15 (a streaming handler there), hence call_api on the path.
        path = (f"/apis/v1beta1/runs/{_segment(run_id)}/nodes/{_segment(node_id)}/artifacts/"
                f"{_segment(name)}:read")
        what = f"artifact {name!r} of node {node_id!r} in run {run_id!r}"
        try:
            with self._kfp("read_artifact", what):
                resp = self._api_client.call_api(
                    path, "GET", header_params={"Accept": "application/json"}, auth_settings=["Bearer"],
                    _return_http_data_only=True, _preload_content=False, _request_timeout=self._timeout)
        except NotFound:
            # KFP >= 2.15 answers 404 {"error_message": "artifact not found: <nil>"} as text/plain for a missing
            # run, node or artifact alike.
            raise NotFound(f"{what} not found", code="artifact_not_found",
                           details={"run_id": run_id, "node_id": node_id, "artifact": name}) from None
        return KfpStream(resp, what)

    @property
    def _namespace(self) -> str | None:
        return self.settings.namespace or None


class KfpStream:
    """A KFP response body read chunk by chunk; transport failures become KfpUnavailable / KfpTimeout."""

    def __init__(self, resp: urllib3.BaseHTTPResponse, what: str) -> None:
        self._resp, self._what = resp, what

    def read(self, n: int) -> bytes:
        """Return up to n bytes of the body; b"" at the end."""
        try:
            return self._resp.read(n)
        except urllib3.exceptions.HTTPError as exc:
            raise translate_transport_error(exc, self._what) from None

    def close(self) -> None:
        """Drop the connection (a half-read body must not go back to the pool) and free its pool slot."""
        self._resp.close()
        self._resp.release_conn()


def _segment(value: str) -> str:
    return quote(value, safe="")


def _upload_result(pipeline_id: str, pipeline_name: str | None, version_id: str | None, version_name: str,
                   *, created: bool) -> dict:
    return {"pipeline_id": pipeline_id, "pipeline_name": pipeline_name, "version_id": version_id,
            "version_name": version_name, "created_pipeline": created}


def _equals_filter(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "string_value": value}]})


def _in_filter(key: str, values: list[str]) -> str:
    return json.dumps({"predicates": [{"operation": "IN", "key": key, "string_values": {"values": values}}]})


def _read_json(resp: urllib3.BaseHTTPResponse) -> dict:
    """Read a raw response's JSON body and hand its connection back to the pool."""
    try:
        return _json_body(resp.data)
    finally:
        # Unpreloaded responses are not released by urllib3 itself; without this every call opens a new
        # TCP connection to KFP.
        resp.release_conn()


def _json_body(data: bytes | None) -> dict:
    if not data:
        return {}
    try:
        value = json.loads(data)
    except ValueError:
        raise KfpUnavailable("KFP answered with a body that is not JSON") from None
    return value if isinstance(value, dict) else {"value": value}


def _kfp_message(exc: ApiException) -> str:
    """Pull KFP's human message out of an error body; never its `error_details` (it holds stack traces)."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    message = ""
    try:
        parsed = json.loads(body) if body else {}
        if isinstance(parsed, dict):
            message = str(parsed.get("message") or parsed.get("error_message") or parsed.get("error") or "")
    except ValueError:
        message = body if body and len(body) < 300 and "\n" not in body.strip() else ""
    message = message.strip().splitlines()[0] if message.strip() else ""
    return message[:500] or (exc.reason or f"HTTP {exc.status}")


def translate_api_exception(exc: ApiException, what: str) -> AdapterError:
    """Map a kfp-server-api ApiException onto the adapter's error types."""
    status = exc.status or 0
    message = _kfp_message(exc)
    text = f"{what}: {message}"
    if status == 404:
        return NotFound(text, details={"kfp_status": status})
    if status == 409 or (status == 500 and "already exist" in message.lower()):
        # KFP 2.0.x answered 500 for duplicate names; 2.1+ answers 409.
        return Conflict(text, details={"kfp_status": status})
    if status == 413:
        return PayloadTooLarge(text)
    if status in (401, 403):
        return KfpUnavailable(f"{what}: KFP refused the adapter's credentials ({message})",
                              code="kfp_unauthorized", details={"kfp_status": status})
    if 400 <= status < 500:
        return KfpRejected(text, details={"kfp_status": status})
    if status in (504,):
        return KfpTimeout(text, details={"kfp_status": status})
    return KfpUnavailable(f"{what}: KFP failed ({message})", details={"kfp_status": status})


def translate_transport_error(exc: urllib3.exceptions.HTTPError, what: str) -> AdapterError:
    """Map a urllib3 connection or timeout failure onto 502/504."""
    reason = getattr(exc, "reason", None) or exc
    refused = isinstance(reason, urllib3.exceptions.NewConnectionError)  # a subclass of ConnectTimeoutError
    if not refused and isinstance(reason, urllib3.exceptions.TimeoutError):
        return KfpTimeout(f"{what}: KFP did not answer in time")
    log.warning("%s: KFP unreachable: %s", what, type(reason).__name__)
    return KfpUnavailable(f"{what}: KFP is unreachable")


