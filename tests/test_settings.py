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


def test_sqlite_is_the_default_tracking_store():
    settings = Settings.from_env({})
    assert (settings.database_url, settings.tracking_backend) == (None, "sqlite")


def test_the_database_url_selects_postgresql_and_its_password_is_never_shown():
    url = "postgresql://kf:s3cret@db.example:5432/kfadapter"
    settings = Settings.from_env({"KFADAPTER_DATABASE_URL": url, "PS_USER": "ignored"})
    assert (settings.database_url, settings.tracking_backend) == (url, "postgresql")
    assert settings.database_source == "KFADAPTER_DATABASE_URL"
    assert settings.database_display == "postgresql://kf:***@db.example:5432/kfadapter"
    assert "s3cret" not in repr(settings)


def test_a_password_in_the_database_urls_query_is_never_shown_either():
    url = "postgresql://kf@db.example/kfadapter?sslmode=require&Password=s3cret"
    settings = Settings.from_env({"KFADAPTER_DATABASE_URL": url})
    assert settings.database_display == (
        "postgresql://kf@db.example/kfadapter?sslmode=require&Password=***"
    )
    assert "s3cret" not in repr(settings)


def test_the_frameworks_ps_variables_build_the_url_with_the_database_name():
    env = {
        "PS_USER": "postgres",
        "PS_PASSWORD": "p@ss/w:rd",
        "PS_IP": "tm-db-postgresql.traininghost",
        "PS_PORT": "5433",
    }
    settings = Settings.from_env(env)
    assert settings.database_url == (
        "postgresql://postgres:p%40ss%2Fw%3Ard@tm-db-postgresql.traininghost:5433/kfadapter"
    )
    named = Settings.from_env({**env, "KFADAPTER_DATABASE_NAME": "tracking"})
    assert named.database_url.endswith(":5433/tracking")
    assert "PS_PASSWORD" in named.database_source
    assert Settings.from_env({**env, "PS_PORT": ""}).database_url.endswith(":5432/kfadapter")
    assert Settings.from_env({"PS_PORT": "5432"}).database_url is None  # alone: no database


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"KFADAPTER_DATABASE_URL": "mysql://h/db"}, "KFADAPTER_DATABASE_URL must be a postgresql"),
        ({"KFADAPTER_DATABASE_URL": "postgresql://u:p@h:x/db"}, "KFADAPTER_DATABASE_URL is not"),
        ({"KFADAPTER_DATABASE_URL": "postgresql://u:p@h/"}, "KFADAPTER_DATABASE_URL must name a"),
        ({"KFADAPTER_DATABASE_URL": "postgresql:///db"}, "KFADAPTER_DATABASE_URL must name a host"),
        ({"PS_USER": "postgres", "PS_IP": "db"}, "PS_PASSWORD must be set"),
        ({"PS_USER": "u", "PS_PASSWORD": "p", "PS_IP": "db", "PS_PORT": "x"}, "PS_PORT must be"),
        ({"PS_USER": "u", "PS_PASSWORD": "p", "PS_IP": "a/b"}, "PS_IP must be a host name"),
        ({"KFADAPTER_DATABASE_TIMEOUT": "0"}, "KFADAPTER_DATABASE_TIMEOUT must be >= 0.1"),
    ],
)
def test_malformed_database_settings_name_the_variable_and_hide_the_password(env, fragment):
    with pytest.raises(SettingsError, match=re.escape(fragment)) as raised:
        Settings.from_env(env)
    assert ":p@" not in str(raised.value)
