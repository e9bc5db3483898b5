"""The chart's ready-made values files (O-RAN with LeoFS, Kubeflow multi-user) and the operator features beside
them (extra volumes, topology spread, ServiceMonitor, egress rules, empty region), rendered with tests/test_chart.py's
renderer and checked against the values schema."""

from __future__ import annotations

import jsonschema
import pytest
import yaml

from tests.test_chart import CHART, TOKEN_FILE, by_kind, container, default_values, env_of, merge, one, render, schema


def values_file(name: str) -> dict:
    return yaml.safe_load((CHART / name).read_text())


@pytest.mark.parametrize(
    "name", ["values-oran.yaml", "values-kubeflow-multiuser.yaml", "values-aimlfw-postgresql.yaml"]
)
def test_values_files_pass_the_schema(name):
    jsonschema.validate(merge(default_values(), values_file(name)), schema())


def test_oran_values_reach_kfp_23_leofs_and_tm():
    manifests = render(values_file("values-oran.yaml"))
    data = one(manifests, "ConfigMap")["data"]
    assert (data["KUBEFLOW_HOST"], data["KUBEFLOW_PORT"], data["KF_NAMESPACE"]) == (
        "ml-pipeline-ui.kubeflow",
        "80",
        "ric",
    )
    assert (data["TRAININGMGR_HOST"], data["TRAININGMGR_PORT"]) == ("tm.traininghost", "32002")
    assert data["KFADAPTER_OBJECT_STORE_ENDPOINT"] == "http://leofs.kubeflow:8080"  # LeoFS's registered name
    assert "KFADAPTER_OBJECT_STORE_REGION" not in data  # empty: not set, and said so by `kfadapter check`
    assert "KFADAPTER_KFP_ENDPOINT" not in data  # the UI proxy, from KUBEFLOW_HOST/PORT as O-RAN configures it
    env = env_of(container(manifests))
    assert env["KFADAPTER_OBJECT_STORE_ACCESS_KEY"] == {"name": "KFADAPTER_OBJECT_STORE_ACCESS_KEY", "value": "leofs"}
    assert env["KFADAPTER_OBJECT_STORE_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "leofs-secret",
        "key": "password",
        "optional": True,
    }
    policy = one(manifests, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    kubeflow = next(rule for rule in policy["egress"] if rule.get("to", [{}])[0].get("namespaceSelector"))
    assert {p["port"] for p in kubeflow["ports"]} >= {3000, 8080}  # ml-pipeline-ui's pod port; MLMD and LeoFS
    tm = policy["egress"][2]
    assert tm == {
        "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "tm"}}}],
        "ports": [{"port": 32002, "protocol": "TCP"}],
    }


def test_multiuser_values_send_a_projected_token_and_bind_the_role():
    values = values_file("values-kubeflow-multiuser.yaml")
    manifests = render(values)
    c = container(manifests)
    assert env_of(c)["KFADAPTER_KFP_TOKEN_FILE"]["value"] == TOKEN_FILE
    assert one(manifests, "ConfigMap")["data"]["KFADAPTER_KFP_ENDPOINT"] == "http://ml-pipeline.kubeflow:8888"
    binding = one(manifests, "RoleBinding")
    profile = values["kubeflow"]["namespace"]
    assert binding["metadata"]["namespace"] == profile
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "kubeflow-pipelines-edit",
    }
    account = one(manifests, "ServiceAccount")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "traininghost"}]
    template = one(manifests, "Deployment")["spec"]["template"]
    assert template["metadata"]["labels"]["sidecar.istio.io/inject"] == "true"
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert (
        volumes["kfp-token"]["projected"]["sources"][0]["serviceAccountToken"]["audience"] == "pipelines.kubeflow.org"
    )
    egress = one(manifests, "NetworkPolicy")["spec"]["egress"]
    assert egress[-1]["ports"] == [{"port": 15012, "protocol": "TCP"}]  # istiod, through extraTo
    # The binding follows an explicit namespace, and is off by default.
    other = render(merge(values, {"rbac": {"kfpRoleBinding": {"namespace": "team-a"}}}))
    assert one(other, "RoleBinding")["metadata"]["namespace"] == "team-a"
    assert not by_kind(render(), "RoleBinding")


def test_extra_volumes_mounts_and_topology_spread_render():
    ca_volume = {"name": "kfp-ca", "configMap": {"name": "kfp-ca"}}
    ca_mount = {"name": "kfp-ca", "mountPath": "/etc/kfp-ca", "readOnly": True}
    spread = {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "kfadapter"}},
    }
    manifests = render(
        {
            "extraVolumes": [ca_volume],
            "extraVolumeMounts": [ca_mount],
            "topologySpreadConstraints": [spread],
            "config": {"KFADAPTER_KFP_CA_CERT": "/etc/kfp-ca/ca.crt"},
        }
    )
    spec = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert ca_volume in spec["volumes"] and ca_mount in spec["containers"][0]["volumeMounts"]
    assert spec["topologySpreadConstraints"] == [spread]
    # The README's CA-bundle advice, followed: the setting points into the mounted bundle.
    assert one(manifests, "ConfigMap")["data"]["KFADAPTER_KFP_CA_CERT"] == "/etc/kfp-ca/ca.crt"


@pytest.mark.parametrize(
    "override",
    [
        {"extraVolumeMounts": [{"name": "x", "mountPath": "relative"}]},
        {"extraVolumes": [{"configMap": {"name": "no-name"}}]},
        {"topologySpreadConstraints": [{"maxSkew": 0, "topologyKey": "k", "whenUnsatisfiable": "ScheduleAnyway"}]},
        {"objectStore": {"region": "US East"}},
        {"serviceMonitor": {"enabled": True, "interval": "often"}},
        {"networkPolicy": {"egress": {"kubeflow": {"ports": []}}}},
        {"rbac": {"kfpRoleBinding": {"create": True, "namespace": "Not_A_Namespace"}}},
        {"tests": {"timeout": 0}},
    ],
)
def test_schema_refuses_bad_operator_values(override):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(merge(default_values(), override), schema())


def test_region_is_rendered_only_when_set():
    assert "KFADAPTER_OBJECT_STORE_REGION" not in one(render(), "ConfigMap")["data"]
    data = one(render({"objectStore": {"region": "eu-west-1"}}), "ConfigMap")["data"]
    assert data["KFADAPTER_OBJECT_STORE_REGION"] == "eu-west-1"


def test_service_monitor_scrapes_metrics():
    assert not by_kind(render(), "ServiceMonitor")
    manifests = render(
        {
            "serviceMonitor": {
                "enabled": True,
                "labels": {"release": "prometheus"},
                "tokenSecret": {"name": "kfadapter-api", "key": "token"},
            }
        }
    )
    monitor = one(manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= one(manifests, "Service")["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("http", "/metrics", "30s")
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": {"name": "kfadapter-api", "key": "token"}}
    plain = one(render({"serviceMonitor": {"enabled": True}}), "ServiceMonitor")
    assert "authorization" not in plain["spec"]["endpoints"][0]


def test_egress_rules_follow_the_policy():
    manifests = render({"networkPolicy": {"enabled": True}, "store": {"url": "postgresql://u:p@db:5432/kf"}})
    egress = one(manifests, "NetworkPolicy")["spec"]["egress"]
    dns, kubeflow, tm, postgres = egress
    assert dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    assert kubeflow["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}}}]
    assert [p["port"] for p in kubeflow["ports"]] == [8888, 3000, 8080, 9000, 8333]
    assert tm["ports"] == [{"port": 32002, "protocol": "TCP"}]
    assert postgres["ports"] == [{"port": 5432, "protocol": "TCP"}]
    assert len(one(render({"networkPolicy": {"enabled": True}}), "NetworkPolicy")["spec"]["egress"]) == 3  # SQLite
    ingress_only = one(render({"networkPolicy": {"enabled": True, "egress": {"enabled": False}}}), "NetworkPolicy")
    assert ingress_only["spec"]["policyTypes"] == ["Ingress"] and "egress" not in ingress_only["spec"]
