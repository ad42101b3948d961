"""The embedded server's store: its schema is versioned and migrated like the tracking store's,
and its services take their time and ids from what they are given."""

from __future__ import annotations

import itertools
import shutil
import sqlite3
from pathlib import Path

import pytest

from kfadapter.localkfp.app import create_app
from kfadapter.localkfp.services import KfpServices
from kfadapter.localkfp.sources import Sources
from kfadapter.localkfp.storage import Store
from kfadapter.localkfp.storage.schema import SCHEMA_VERSION
from kfadapter.sqlitedb import StoreError

V2 = "/apis/v2beta1"


def test_a_new_file_is_wal_at_the_current_schema_version(tmp_path: Path) -> None:
    store = Store(tmp_path / "kfp.sqlite3")
    try:
        assert store.db.schema_version() == SCHEMA_VERSION >= 1
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "kfp.sqlite3") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# Made by the embedded server of commit 90824ff, before the schema had a version: one
# pipeline with its version, the Default experiment and one more, and one FAILED run.
UNVERSIONED = Path(__file__).parent / "data" / "made-by-90824ff.sqlite3"


def test_a_file_from_before_the_schema_was_versioned_is_served_as_it_was(
    tmp_path: Path,
) -> None:
    path = tmp_path / "kfp.sqlite3"
    shutil.copy(UNVERSIONED, path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 0
    store = Store(path)
    try:
        assert store.db.schema_version() == SCHEMA_VERSION
        client = create_app(KfpServices.over(store)).test_client()
        pipelines = client.get(f"{V2}/pipelines").get_json()["pipelines"]
        assert [p["name"] for p in pipelines] == ["kept"]
        versions = client.get(f"{V2}/pipelines/{pipelines[0]['pipeline_id']}/versions")
        assert versions.get_json()["pipeline_versions"][0]["pipeline_spec"]["pipelineInfo"] == {
            "name": "kept"
        }
        experiments = client.get(f"{V2}/experiments").get_json()["experiments"]
        assert sorted(e["display_name"] for e in experiments) == ["Default", "kept-experiment"]
        [run] = client.get(f"{V2}/runs").get_json()["runs"]
        assert (run["display_name"], run["state"]) == ("kept-run", "FAILED")
    finally:
        store.close()


def test_a_file_newer_than_the_code_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "kfp.sqlite3"
    Store(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}"):
        Store(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_times_and_ids_come_from_the_injected_sources(tmp_path: Path) -> None:
    """A clock and an id source, as KFP's util.TimeInterface and UUIDGeneratorInterface."""
    ids = (f"id-{n}" for n in itertools.count(1))
    store = Store(tmp_path / "kfp.sqlite3")
    services = KfpServices.over(
        store, Sources(clock=lambda: 1_700_000_000_000_000, new_id=ids.__next__)
    )
    try:
        client = create_app(services).test_client()
        created = client.post(f"{V2}/experiments", json={"display_name": "e"}).get_json()
        assert created["experiment_id"] == "id-2"  # id-1 is the Default experiment
        assert created["created_at"] == "2023-11-14T22:13:20Z"
        default = client.get(f"{V2}/experiments/id-1").get_json()
        assert default["display_name"] == "Default"
    finally:
        store.close()
