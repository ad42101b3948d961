"""Settings are read once from the environment and validated with clear messages."""

import re

import pytest

from kfadapter.settings import Settings, SettingsError


def test_deployment_variables_build_the_kfp_endpoint():
    settings = Settings.from_env(
        {
            "KUBEFLOW_HOST": "ml-pipeline-ui.kubeflow",
            "KUBEFLOW_PORT": "80",
            "KF_NAMESPACE": "ric",
            "KF_ADAPTER_PORT": "5001",
            "TRAININGMGR_HOST": "tm.traininghost",
            "TRAININGMGR_PORT": "32002",
        }
    )
    assert settings.kfp_endpoint == "http://ml-pipeline-ui.kubeflow:80/pipeline"
    assert settings.namespace == "ric"
    assert settings.adapter_port == 5001
    assert settings.notify_url == ("http://tm.traininghost:32002/trainingjob/pipelineNotification")


def test_kfp_endpoint_wins_over_host_and_port():
    settings = Settings.from_env(
        {"KUBEFLOW_HOST": "x", "KUBEFLOW_PORT": "1", "KFP_ENDPOINT": "http://127.0.0.1:8888/"}
    )
    assert settings.kfp_endpoint == "http://127.0.0.1:8888"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("KUBEFLOW_PORT", "eighty", "KUBEFLOW_PORT must be a whole number"),
        ("KF_ADAPTER_PORT", "70000", "KF_ADAPTER_PORT must be between 1 and 65535"),
        ("KFP_TIMEOUT", "soon", "KFP_TIMEOUT must be a number"),
        ("KFADAPTER_POLL_INTERVAL", "nan", "KFADAPTER_POLL_INTERVAL must be a finite number"),
        ("KFP_TIMEOUT", "inf", "KFP_TIMEOUT must be a finite number"),
        ("KFP_ENDPOINT", "ftp://x", "KFP_ENDPOINT must be an http(s) URL"),
        ("KFADAPTER_TRACKING", "maybe", "KFADAPTER_TRACKING must be true or false"),
        ("KFADAPTER_LOG_LEVEL", "LOUD", "KFADAPTER_LOG_LEVEL must be one of DEBUG"),
        ("KFADAPTER_NOTIFY_BACKOFF_CAP", "0.5", "KFADAPTER_NOTIFY_BACKOFF_CAP must be >= 2.0"),
        ("KFP_USERNAME", "alice", "KFP_USERNAME and KFP_PASSWORD must be set together"),
        (
            "KFADAPTER_TRACKING_RETENTION_DAYS",
            "-1",
            "KFADAPTER_TRACKING_RETENTION_DAYS must be >= 0",
        ),
        ("KFADAPTER_TRACKING_RETENTION_DAYS", "month", "RETENTION_DAYS must be a number"),
    ],
)
def test_malformed_settings_name_the_variable(name, value, fragment):
    with pytest.raises(SettingsError, match=re.escape(fragment)):
        Settings.from_env({name: value})


def test_tracking_retention_is_days_and_zero_keeps_forever():
    assert Settings.from_env({}).tracking_retention_days == 30.0
    assert (
        Settings.from_env({"KFADAPTER_TRACKING_RETENTION_DAYS": "0.5"}).tracking_retention_days
        == 0.5
    )
    assert (
        Settings.from_env({"KFADAPTER_TRACKING_RETENTION_DAYS": "0"}).tracking_retention_days == 0
    )


def test_an_empty_environment_gives_the_documented_defaults():
    assert Settings.from_env({}) == Settings()
