"""Volume-based data passing for v1 workflows: the pure rewrite, the upload route's option and the CLI."""
from __future__ import annotations

import copy
import io
import json
import posixpath
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import yaml

from kfadapter.packages import parsing as pl
from kfadapter.packages import volume_passing as vp
from kfadapter.core.errors import BadRequest

from tests.conftest import PIPELINES, package

ROOT = Path(__file__).resolve().parent.parent
V1 = package("qoe_train_v1_argo.yaml")
V2 = package("qoe_train_v2.yaml")
CLAIM = {"name": "data-storage", "persistentVolumeClaim": {"claimName": "my-pvc"}}

# A steps template calling a nested DAG that forwards its input artifact to a script template and exports
# the script's output: every artifact shape kfp 1.x and plain Argo use between templates.
NESTED = yaml.safe_load("""
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {generateName: nested-}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: produce, template: produce}
    - - name: inner
        template: inner
        arguments:
          artifacts:
          - {name: text, from: '{{steps.produce.outputs.artifacts.produce-out}}'}
  - name: inner
    inputs:
      artifacts:
      - {name: text}
    outputs:
      artifacts:
      - {name: result, from: '{{tasks.consume.outputs.artifacts.consume-out}}'}
    dag:
      tasks:
      - name: consume
        template: consume
        arguments:
          artifacts:
          - {name: text, from: '{{inputs.artifacts.text}}'}
  - name: produce
    container:
      image: alpine
      command: [sh, -c, 'echo hi > {{outputs.artifacts.produce-out.path}}']
    outputs:
      artifacts:
      - {name: produce-out, path: /tmp/outputs/out/data}
  - name: consume
    script:
      image: alpine
      command: [sh]
      source: 'cat {{inputs.artifacts.text.path}} > /tmp/outputs/out/data'
    inputs:
      artifacts:
      - {name: text, path: /tmp/inputs/text/data}
    outputs:
      artifacts:
      - {name: consume-out, path: /tmp/outputs/out/data}
""")


def _templates(wf: dict) -> dict[str, dict]:
    return {t["name"]: t for t in wf["spec"]["templates"]}


def _tasks(template: dict) -> list[dict]:
    if "dag" in template:
        return template["dag"]["tasks"]
    return [step for group in template.get("steps") or [] for step in group]


def _pod(template: dict) -> dict | None:
    return template.get("container") or template.get("script")


def _artifact_places(wf: dict) -> list[str]:
    """Every place an artifact list can sit: template inputs and outputs, task and step arguments."""
    found = []
    for t in wf["spec"]["templates"]:
        for side in ("inputs", "outputs"):
            if "artifacts" in (t.get(side) or {}):
                found.append(f"{t['name']}.{side}")
        for task in _tasks(t):
            if "artifacts" in (task.get("arguments") or {}):
                found.append(f"{t['name']}/{task['name']}.arguments")
    return found


def _params(holder: dict | None) -> dict[str, dict]:
    return {p["name"]: p for p in (holder or {}).get("parameters") or []}


def _mounts(template: dict) -> dict[str, dict]:
    return {m["mountPath"]: m for m in _pod(template).get("volumeMounts") or []}


def _rewrite(wf=None, volume=CLAIM, **kwargs) -> dict:
    return vp.rewrite_workflow(pl.load_package(V1).spec if wf is None else wf, volume, **kwargs)


# --- acceptance 1: the fixture, structurally ------------------------------------------------------------

def test_fixture_keeps_no_artifacts_anywhere():
    original = pl.load_package(V1).spec
    assert _artifact_places(original)  # the fixture really passes artifacts
    assert _artifact_places(_rewrite(original)) == []


def test_every_former_artifact_path_is_mounted_from_the_volume():
    original = pl.load_package(V1).spec
    rewritten = _templates(_rewrite(original))
    checked = 0
    for t in original["spec"]["templates"]:
        if _pod(t) is None:
            continue
        mounts = _mounts(rewritten[t["name"]])
        inputs, outputs = _params(rewritten[t["name"]].get("inputs")), _params(rewritten[t["name"]].get("outputs"))
        for side in ("inputs", "outputs"):
            for art in (t.get(side) or {}).get("artifacts") or []:
                mount = mounts[posixpath.dirname(art["path"])]
                assert mount["name"] == "data-storage"
                param = art["name"] + "-subpath"
                if side == "inputs":
                    assert mount == {"name": "data-storage", "mountPath": posixpath.dirname(art["path"]),
                                     "subPath": "{{inputs.parameters." + param + "}}", "readOnly": True}
                    assert param in inputs and "value" not in inputs[param]
                else:
                    # A per-execution directory, published as the output parameter consumers receive.
                    assert "{{workflow.uid}}" in mount["subPath"] and "{{pod.name}}" in mount["subPath"]
                    assert mount["subPath"].endswith("/" + art["name"]) and "readOnly" not in mount
                    assert outputs[param]["value"] == mount["subPath"]
                checked += 1
    assert checked == 8  # make-blob 1, produce-list 1, train 1 in + 5 out


def test_parameters_wire_producer_subpaths_to_consumers():
    wf = _rewrite()
    templates = _templates(wf)
    task = next(t for t in _tasks(templates["qoe-train-v1"]) if t["name"] == "train")
    args = _params(task["arguments"])
    assert args["produce-list-data_list-subpath"] == {
        "name": "produce-list-data_list-subpath",
        "value": "{{tasks.produce-list.outputs.parameters.produce-list-data_list-subpath}}"}
    assert set(args) == {"epochs", "lr", "produce-list-data_list-subpath"}  # the old parameters stay
    # Generic: every subPath argument names a producer output that exists and a consumer input that mounts it.
    wired = 0
    for t in wf["spec"]["templates"]:
        callee = {x["name"]: x["template"] for x in _tasks(t)}
        for x in _tasks(t):
            for name, arg in _params(x.get("arguments")).items():
                m = re.fullmatch(r"\{\{tasks\.([^.]+)\.outputs\.parameters\.([^}]+)\}\}", arg.get("value", ""))
                if not m:
                    continue
                producer = templates[callee[m.group(1)]]
                assert m.group(2) in _params(producer.get("outputs"))
                consumer = templates[x["template"]]
                assert name in _params(consumer.get("inputs"))
                assert any(mt["subPath"] == "{{inputs.parameters." + name + "}}" for mt in _mounts(consumer).values())
                wired += 1
    assert wired == 1


def test_volume_workflow_parameters_and_kfp_annotations_survive():
    original = pl.load_package(V1).spec
    wf = _rewrite(original)
    assert wf["spec"]["volumes"] == [CLAIM]
    assert wf["spec"]["arguments"] == original["spec"]["arguments"]
    annotations = wf["metadata"]["annotations"]
    for key, value in original["metadata"]["annotations"].items():
        assert annotations[key] == value
    assert json.loads(annotations[vp.ANNOTATION]) == {"path_prefix": "artifact_data", "volume": "data-storage"}
    for name, t in _templates(wf).items():  # the component specs the outputs decoder reads stay as they were
        assert t.get("metadata") == _templates(original)[name].get("metadata")
    assert pl.parameters_of(wf) == pl.parameters_of(original)


def test_input_is_not_modified():
    original = pl.load_package(V1).spec
    before = copy.deepcopy(original)
    _rewrite(original)
    assert original == before


def test_steps_nested_dag_and_script_templates():
    wf = vp.rewrite_workflow(NESTED, CLAIM, path_prefix="runs/data/")
    assert _artifact_places(wf) == []
    t = _templates(wf)
    step = _tasks(t["main"])[1]
    assert step["arguments"] == {"parameters": [
        {"name": "text-subpath", "value": "{{steps.produce.outputs.parameters.produce-out-subpath}}"}]}
    assert t["inner"]["inputs"] == {"parameters": [{"name": "text-subpath"}]}
    assert t["inner"]["outputs"] == {"parameters": [
        {"name": "result-subpath",
         "valueFrom": {"parameter": "{{tasks.consume.outputs.parameters.consume-out-subpath}}"}}]}
    assert t["inner"]["dag"]["tasks"][0]["arguments"] == {"parameters": [
        {"name": "text-subpath", "value": "{{inputs.parameters.text-subpath}}"}]}
    # Script templates mount like containers; {{...artifacts.X.path}} becomes the literal path.
    assert set(_mounts(t["consume"])) == {"/tmp/inputs/text", "/tmp/outputs/out"}
    assert t["consume"]["script"]["source"] == "cat /tmp/inputs/text/data > /tmp/outputs/out/data"
    assert t["produce"]["container"]["command"][2] == "echo hi > /tmp/outputs/out/data"
    assert _params(t["produce"]["outputs"])["produce-out-subpath"]["value"] == \
        "runs/data/{{workflow.uid}}/{{pod.name}}/produce-out"


def test_rewritten_yaml_round_trips_and_stays_a_v1_package():
    original = pl.load_package(V1)
    new, data = vp.rewrite_package(original, CLAIM)
    assert new.kind == pl.V1 and new.container == "yaml" and new.name == original.name
    again = pl.load_package(data)
    assert again.spec == new.spec and again.kind == pl.V1
    assert b"      - |\n" in data  # component sources stay readable literal blocks


# --- determinism and the second rewrite ---------------------------------------------------------------

def test_same_input_gives_byte_identical_output():
    first = vp.rewrite_package(pl.load_package(V1), CLAIM)[1]
    second = vp.rewrite_package(pl.load_package(V1), dict(reversed(list(CLAIM.items()))))[1]
    assert first == second
    assert vp.dump_workflow(vp.rewrite_workflow(NESTED, CLAIM)) == vp.dump_workflow(vp.rewrite_workflow(NESTED, CLAIM))


def test_second_rewrite_with_the_same_volume_is_a_no_op():
    package_1, data_1 = vp.rewrite_package(pl.load_package(V1), CLAIM)
    package_2, data_2 = vp.rewrite_package(pl.load_package(data_1), CLAIM)
    assert data_2 == data_1 and package_2.spec == package_1.spec
    assert package_2.spec["spec"]["volumes"] == [CLAIM]  # not added twice


@pytest.mark.parametrize("volume, prefix", [
    ({"name": "data-storage", "persistentVolumeClaim": {"claimName": "other"}}, "artifact_data"),
    ({"name": "data", "persistentVolumeClaim": {"claimName": "my-pvc"}}, "artifact_data"),
    (CLAIM, "elsewhere"),
], ids=["other-claim", "other-name", "other-prefix"])
def test_second_rewrite_that_would_change_the_volume_is_refused(volume, prefix):
    once = _rewrite()
    with pytest.raises(BadRequest) as info:
        vp.rewrite_workflow(once, volume, path_prefix=prefix)
    assert info.value.code == "already_rewritten"
    assert info.value.details["rewritten_with"] == {"path_prefix": "artifact_data", "volume": "data-storage"}


# --- refusals (pure) ----------------------------------------------------------------------------------

def _nested_with(change) -> dict:
    wf = copy.deepcopy(NESTED)
    change(_templates(wf), wf)
    return wf


def _refusal(wf, code=vp.UNSUPPORTED, volume=CLAIM) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        vp.rewrite_workflow(wf, volume)
    assert info.value.code == code, info.value.message
    return info.value


def test_constant_task_artifact_argument_is_refused():
    def raw(t, wf):
        _tasks(t["main"])[1]["arguments"]["artifacts"] = [{"name": "text", "raw": {"data": "hello"}}]
    err = _refusal(_nested_with(raw))
    assert "constant artifact argument" in err.message and "'text'" in err.message


def test_constant_template_input_and_workflow_argument_are_refused():
    def raw_input(t, wf):
        t["consume"]["inputs"]["artifacts"][0]["raw"] = {"data": "x"}
        wf["spec"]["arguments"] = {"artifacts": [{"name": "seed", "http": {"url": "https://example.com/x"}}]}
    err = _refusal(_nested_with(raw_input))
    assert len(err.details["problems"]) == 2
    assert "workflow argument artifact 'seed'" in err.message and "(raw)" in err.message


def test_differing_file_names_across_an_edge_are_refused_naming_both_ends():
    def rename(t, wf):
        t["consume"]["inputs"]["artifacts"][0]["path"] = "/tmp/inputs/text/input.txt"
    err = _refusal(_nested_with(rename))
    # The name travels produce -> main -> inner (DAG input) -> consume: the check follows every hop.
    assert err.details["problems"] == [
        "template 'consume' reads input artifact 'text' as file 'input.txt' but produce/produce-out writes "
        "'data'; a consumer mounts its producer's directory, so both must use one file name"]


def test_differing_file_names_without_an_edge_between_them_are_fine():
    def rename(t, wf):
        t["consume"]["outputs"]["artifacts"][0]["path"] = "/tmp/outputs/out/model.pkl"
    wf = vp.rewrite_workflow(_nested_with(rename), CLAIM)
    assert "/tmp/outputs/out" in _mounts(_templates(wf)["consume"])


@pytest.mark.parametrize("change, words", [
    (lambda t, wf: t["produce"]["outputs"]["artifacts"][0].update(path="/data"), "directly in /"),
    (lambda t, wf: t["consume"]["outputs"]["artifacts"][0].update(path="/tmp/inputs/text/out"), "shares directory"),
    (lambda t, wf: t["produce"]["outputs"]["artifacts"][0].update(globalName="g"), "global artifact"),
    (lambda t, wf: wf["spec"]["templates"].append(
        {"name": "res", "resource": {"action": "create"}, "outputs": {"artifacts": [{"name": "a", "path": "/a/b"}]}}),
     "not a container, script, DAG or steps"),
    (lambda t, wf: _tasks(t["main"])[1]["arguments"]["artifacts"][0].update(
        {"from": "{{steps.nope.outputs.artifacts.a}}"}), "unknown task or step 'nope'"),
    (lambda t, wf: t["inner"]["dag"]["tasks"][0]["arguments"]["artifacts"][0].update(
        {"from": "{{inputs.artifacts.undeclared}}"}), "undeclared input artifact"),
    (lambda t, wf: _tasks(t["main"])[0].update(templateRef={"name": "lib", "template": "x"}), "templateRef"),
    (lambda t, wf: t["produce"]["container"].setdefault("env", []).append(
        {"name": "X", "value": "{{workflow.outputs.artifacts.other}}"}), "still refers to artifacts"),
], ids=["root-dir", "shared-dir", "global", "resource", "unknown-task", "undeclared-input", "template-ref",
        "leftover"])
def test_workflows_the_rewrite_cannot_keep_working_are_refused(change, words):
    err = _refusal(_nested_with(change))
    assert words in err.message


def test_existing_parameter_with_the_subpath_name_is_refused():
    def clash(t, wf):
        t["produce"]["outputs"]["parameters"] = [{"name": "produce-out-subpath", "value": "x"}]
    assert "already has a parameter named 'produce-out-subpath'" in _refusal(_nested_with(clash)).message


def test_volume_name_taken_by_the_workflow_is_refused():
    def taken(t, wf):
        wf["spec"]["volumes"] = [{"name": "data-storage", "emptyDir": {}}]
    assert _refusal(_nested_with(taken), code="invalid_volume").details["name"] == "data-storage"


@pytest.mark.parametrize("change", [
    lambda t, wf: wf["spec"].update(templates="main"),
    lambda t, wf: t["consume"].update(inputs={"artifacts": "text"}),
    lambda t, wf: _tasks(t["main"])[1].update(arguments=["text"]),
    lambda t, wf: t["produce"]["outputs"]["artifacts"][0].update(path=7),
    lambda t, wf: wf.update(metadata="x"),
], ids=["templates", "inputs", "arguments", "path", "metadata"])
def test_malformed_workflows_are_400s_not_crashes(change):
    with pytest.raises(BadRequest):
        vp.rewrite_workflow(_nested_with(change), CLAIM)


def test_v2_package_is_refused():
    with pytest.raises(BadRequest) as info:
        vp.rewrite_package(pl.load_package(V2), CLAIM)
    assert info.value.code == "volume_passing_unsupported"
    assert info.value.message == ("v2 pipelines pass data through the pipeline root; volume passing applies "
                                  "to v1 workflows")


@pytest.mark.parametrize("prefix", ["/abs", "", "a/../b", "{{workflow.name}}"])
def test_bad_path_prefix_is_refused(prefix):
    with pytest.raises(BadRequest) as info:
        _rewrite(path_prefix=prefix)
    assert info.value.details == {"field": "path_prefix"}


# --- the volume argument ------------------------------------------------------------------------------

def test_claim_name_and_json_volume():
    assert vp.parse_volume(" my-pvc ") == CLAIM
    nfs = {"nfs": {"server": "10.0.0.2", "path": "/exports"}, "name": "data"}
    assert vp.parse_volume(json.dumps(nfs)) == {"name": "data", "nfs": {"server": "10.0.0.2", "path": "/exports"}}
    assert list(vp.parse_volume(json.dumps(nfs))) == ["name", "nfs"]  # name first, whatever the input order
    assert vp.parse_volume('{"persistentVolumeClaim": {"claimName": "x"}}')["name"] == "data-storage"


@pytest.mark.parametrize("text, words", [
    (None, "needs 'volume'"),
    ("  ", "needs 'volume'"),
    ("My_PVC", "not a valid PersistentVolumeClaim name"),
    ("{nope", "not valid JSON"),
    ("[1]", "not a valid PersistentVolumeClaim name"),
    ('{"name": "Data", "persistentVolumeClaim": {"claimName": "x"}}', "not a valid Kubernetes name"),
    ('{"name": "d"}', "exactly one source"),
    ('{"nfs": {}, "hostPath": {}}', "exactly one source"),
    ('{"emptyDir": {}}', "only as long as one pod"),
    ('{"configMap": {"name": "c"}}', "read-only"),
    ('{"madeUp": {}}', "unknown volume source 'madeUp'"),
    ('{"nfs": "server"}', "must be an object"),
    ('{"persistentVolumeClaim": {"claimName": "x", "readOnly": true}}', "read-only"),
    ('{"persistentVolumeClaim": {}}', "not a valid PersistentVolumeClaim name"),
    ('"my-pvc"', "not a valid PersistentVolumeClaim name"),
])
def test_bad_volume_arguments(text, words):
    with pytest.raises(BadRequest) as info:
        vp.parse_volume(text)
    assert info.value.code == "invalid_volume" and info.value.details == {"field": "volume"}
    assert words in info.value.message


def test_unknown_data_passing_names_the_accepted_ones():
    with pytest.raises(BadRequest) as info:
        vp.check_method("pvc")
    assert info.value.code == "invalid_data_passing"
    assert info.value.message == "data_passing must be one of: artifact, volume (got 'pvc')"
    assert info.value.details == {"field": "data_passing", "accepted": ["artifact", "volume"]}


# --- the upload route (acceptance 2 and the 400s) -----------------------------------------------------

def _upload(client, name, data, query=""):
    return client.post(f"/pipelineIds/{name}{query}", data={"file": (io.BytesIO(data), "file"), "description": ""},
                       content_type="multipart/form-data")


def _stored_spec(sandbox, pipeline_id, version_id) -> dict:
    resp = requests.get(f"{sandbox.url}/apis/v2beta1/pipelines/{pipeline_id}/versions/{version_id}", timeout=10)
    resp.raise_for_status()
    return resp.json()["pipeline_spec"]


def test_upload_with_volume_passing_stores_the_rewritten_workflow_and_lists_its_parameters(client, sandbox):
    plain = _upload(client, "plain", V1)
    resp = _upload(client, "qoe_v1", V1, "?data_passing=volume&volume=my-pvc")
    assert resp.status_code == 200, resp.json
    assert resp.json["pipeline_kind"] == "v1" and resp.json["created_pipeline"] is True
    stored = _stored_spec(sandbox, resp.json["pipeline_id"], resp.json["version_id"])
    assert stored == vp.rewrite_workflow(pl.load_package(V1).spec, CLAIM)
    assert _artifact_places(stored) == []
    details = client.get(f"/pipelines/{resp.json['pipeline_id']}")
    assert details.status_code == 200
    expected = client.get(f"/pipelines/{plain.json['pipeline_id']}").json
    assert details.json["parameters"] == expected["parameters"]
    assert details.json["arguments"] == {"n": 75, "epochs": 3, "lr": 0.01, "trainingjob_id": "tj-1"}


def test_upload_with_a_json_volume_from_a_zip_package(client, sandbox):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("pipeline.yaml", V1)
    volume = {"name": "data", "nfs": {"server": "nfs.local", "path": "/kfp"}}
    resp = _upload(client, "zipped", buf.getvalue(), "?data_passing=volume&volume=" + quote(json.dumps(volume)))
    assert resp.status_code == 200, resp.json
    stored = _stored_spec(sandbox, resp.json["pipeline_id"], resp.json["version_id"])
    assert stored["spec"]["volumes"] == [volume]
    # A second version of an already rewritten package with the same volume uploads unchanged.
    query = "?data_passing=volume&volume=" + quote(json.dumps(volume))
    again = _upload(client, "zipped", vp.dump_workflow(stored), query)
    assert again.status_code == 200 and again.json["version_name"] == "2"
    assert _stored_spec(sandbox, again.json["pipeline_id"], again.json["version_id"]) == stored


def test_explicit_artifact_passing_uploads_the_package_as_it_is(client, sandbox):
    resp = _upload(client, "as_is", V1, "?data_passing=artifact")
    assert resp.status_code == 200, resp.json
    assert _stored_spec(sandbox, resp.json["pipeline_id"], resp.json["version_id"]) == pl.load_package(V1).spec


def _raw_argument_workflow() -> bytes:
    wf = pl.load_package(V1).spec
    train = next(t for t in _tasks(_templates(wf)["qoe-train-v1"]) if t["name"] == "train")
    train["arguments"]["artifacts"] = [{"name": "produce-list-data_list", "raw": {"data": "[1, 2]"}}]
    return yaml.safe_dump(wf).encode()


def _renamed_input_workflow() -> bytes:
    wf = pl.load_package(V1).spec
    _templates(wf)["train"]["inputs"]["artifacts"][0]["path"] = "/tmp/inputs/data_list/list.json"
    return yaml.safe_dump(wf).encode()


@pytest.mark.parametrize("data, query, code, words", [
    (V2, "?data_passing=volume&volume=my-pvc", "volume_passing_unsupported",
     "v2 pipelines pass data through the pipeline root; volume passing applies to v1 workflows"),
    (V1, "?data_passing=volumes&volume=my-pvc", "invalid_data_passing", "one of: artifact, volume"),
    (V1, "?data_passing=", "invalid_data_passing", "one of: artifact, volume"),
    (V1, "?data_passing=volume", "invalid_volume", "needs 'volume'"),
    (V1, "?data_passing=volume&volume=" + quote('{"emptyDir": {}}'), "invalid_volume", "one pod"),
    (V1, "?data_passing=volume&volume=" + quote("{broken"), "invalid_volume", "not valid JSON"),
    (V1, "?data_passing=volume&volume=Bad_Claim", "invalid_volume", "not a valid PersistentVolumeClaim name"),
    (V1, "?volume=my-pvc", "invalid_volume", "only with data_passing=volume"),
    (_raw_argument_workflow(), "?data_passing=volume&volume=my-pvc", "volume_passing_unsupported",
     "constant artifact argument"),
    (_renamed_input_workflow(), "?data_passing=volume&volume=my-pvc", "volume_passing_unsupported",
     "as file 'list.json' but produce-list/produce-list-data_list writes 'data'"),
], ids=["v2", "unknown-method", "empty-method", "no-volume", "empty-dir", "bad-json", "bad-claim",
        "volume-without-method", "raw-artifact", "file-names"])
def test_upload_refusals_are_400_envelopes_and_create_nothing(client, kfp_counts, data, query, code, words):
    kfp_counts.reset()
    resp = _upload(client, "refused", data, query)
    assert resp.status_code == 400 and resp.content_type == "application/json"
    assert resp.json["status"] == 400 and resp.json["code"] == code
    assert words in resp.json["message"]
    assert kfp_counts.read()["total"] == 0  # refused before KFP saw anything


# --- the CLI ------------------------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kfadapter.cli", "rewrite-volume", *args], cwd=ROOT,
                          capture_output=True, timeout=60)


def test_cli_rewrites_a_package_to_a_file(tmp_path):
    out = tmp_path / "out.yaml"
    done = _cli(str(PIPELINES / "qoe_train_v1_argo.yaml"), str(out), "--claim", "my-pvc")
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == vp.rewrite_package(pl.load_package(V1), CLAIM)[1]
    again = _cli(str(out), "-", "--claim", "my-pvc")  # the no-op second rewrite, to stdout
    assert again.returncode == 0 and again.stdout == out.read_bytes()


def test_cli_json_volume_and_prefix(tmp_path):
    volume = {"name": "data", "persistentVolumeClaim": {"claimName": "x"}}
    done = _cli(str(PIPELINES / "qoe_train_v1_argo.yaml"), "-", "--volume", json.dumps(volume),
                "--path-prefix", "kfp/data")
    assert done.returncode == 0, done.stderr
    wf = yaml.safe_load(done.stdout)
    assert wf["spec"]["volumes"] == [volume]
    assert _params(_templates(wf)["make-blob"]["outputs"])["make-blob-blob-subpath"]["value"].startswith("kfp/data/")


def test_cli_errors_are_envelopes_on_stderr(tmp_path):
    out = tmp_path / "out.yaml"
    done = _cli(str(PIPELINES / "qoe_train_v2.yaml"), str(out), "--claim", "my-pvc")
    assert done.returncode == 1 and not out.exists()
    assert json.loads(done.stderr)["code"] == "volume_passing_unsupported"
    bad = _cli(str(PIPELINES / "qoe_train_v1_argo.yaml"), str(out), "--volume", "my-pvc")
    assert bad.returncode == 1 and json.loads(bad.stderr)["code"] == "invalid_volume"
    missing = _cli(str(tmp_path / "nope.yaml"), str(out), "--claim", "my-pvc")
    assert missing.returncode == 1 and b"nope.yaml" in missing.stderr
    usage = _cli(str(PIPELINES / "qoe_train_v1_argo.yaml"), str(out))  # neither --claim nor --volume
    assert usage.returncode == 2
