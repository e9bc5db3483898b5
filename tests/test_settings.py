"""Settings from the environment: O-RAN names, KFADAPTER_* precedence, clear errors, masked secrets."""
from __future__ import annotations

import pytest

from kfadapter.settings import DEFAULT_ARGUMENT_MAPPING, Settings, SettingsError

ORAN_CONFIGMAP = {"KUBEFLOW_HOST": "ml-pipeline-ui.kubeflow", "KUBEFLOW_PORT": "80", "KF_NAMESPACE": "ric",
                  "KF_ADAPTER_PORT": "5001", "TRAININGMGR_HOST": "tm.traininghost", "TRAININGMGR_PORT": "32002"}


def test_defaults():
    s = Settings.from_env({})
    assert s.kfp_endpoint is None and s.namespace == "kubeflow" and s.port == 5001
    assert dict(s.argument_mapping) == DEFAULT_ARGUMENT_MAPPING


def test_oran_configmap_points_at_the_ui_proxy():
    s = Settings.from_env(ORAN_CONFIGMAP)
    assert s.kfp_endpoint == "http://ml-pipeline-ui.kubeflow:80/pipeline"
    assert s.namespace == "ric" and s.port == 5001


def test_kfadapter_names_win():
    s = Settings.from_env(ORAN_CONFIGMAP | {"KFADAPTER_KFP_ENDPOINT": "https://kfp.example/", "KFADAPTER_PORT": "6000",
                                            "KFADAPTER_NAMESPACE": "team"})
    assert (s.kfp_endpoint, s.port, s.namespace) == ("https://kfp.example", 6000, "team")


@pytest.mark.parametrize("env, name", [
    ({"KF_ADAPTER_PORT": "http"}, "KF_ADAPTER_PORT"),
    ({"KUBEFLOW_HOST": "h", "KUBEFLOW_PORT": "-1"}, "KUBEFLOW_PORT"),
    ({"KFADAPTER_KFP_TIMEOUT": "soon"}, "KFADAPTER_KFP_TIMEOUT"),
    ({"KFADAPTER_KFP_ENDPOINT": "kfp:80"}, "KFADAPTER_KFP_ENDPOINT"),
    ({"KFADAPTER_ARGUMENT_MAPPING": "[1]"}, "KFADAPTER_ARGUMENT_MAPPING"),
    ({"KFADAPTER_ARGUMENT_MAPPING": "{"}, "KFADAPTER_ARGUMENT_MAPPING"),
])
def test_invalid_values_name_the_variable(env, name):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(env)


def test_custom_argument_mapping():
    s = Settings.from_env({"KFADAPTER_ARGUMENT_MAPPING": '{"data": "{featuregroup_name}"}'})
    assert dict(s.argument_mapping) == {"data": "{featuregroup_name}"}


def test_token_never_in_repr():
    s = Settings.from_env({"KFADAPTER_KFP_TOKEN": "s3cr3t-token"})
    assert s.kfp_token == "s3cr3t-token"
    assert "s3cr3t" not in repr(s) and "***" in repr(s)


def test_training_manager_url_from_oran_names_or_full_url():
    assert Settings.from_env(ORAN_CONFIGMAP).tm_url == \
        "http://tm.traininghost:32002/trainingjob/pipelineNotification"
    assert Settings.from_env(ORAN_CONFIGMAP | {"KFADAPTER_TM_URL": "https://tm:1/x"}).tm_url == "https://tm:1/x"
    assert Settings.from_env({}).tm_url is None and Settings.from_env({}).poll_interval == 10.0
    with pytest.raises(SettingsError, match="KFADAPTER_WATCH"):
        Settings.from_env({"KFADAPTER_WATCH": "maybe"})


def test_store_settings():
    s = Settings.from_env({})
    assert (s.store_url, s.history_days, s.intent_grace) == (None, 30.0, 300.0)
    url = "postgresql://kf:pa55word@db:5432/kfadapter"
    s = Settings.from_env({"KFADAPTER_STORE_URL": url, "KFADAPTER_HISTORY_DAYS": "7",
                           "KFADAPTER_INTENT_GRACE": "60"})
    assert (s.store_url, s.history_days, s.intent_grace) == (url, 7.0, 60.0)
    assert "pa55word" not in repr(s)  # the URL may carry the database password
    assert Settings.from_env({"KFADAPTER_STORE_URL": "sqlite:////data/s.sqlite"}).store_url == "sqlite:////data/s.sqlite"
    with pytest.raises(SettingsError, match="KFADAPTER_STORE_URL") as caught:
        Settings.from_env({"KFADAPTER_STORE_URL": "mysql://kf:pa55word@db/kf"})
    assert "pa55word" not in str(caught.value)
    for name in ("KFADAPTER_HISTORY_DAYS", "KFADAPTER_INTENT_GRACE"):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: "0"})
