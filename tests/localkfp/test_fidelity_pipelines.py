"""Pipelines and versions answer as KFP 2.17 does (rows 6 and 12 of kfp-fidelity.md and its
error rows), over real HTTP with requests and the unmodified kfp.Client."""

from __future__ import annotations

import http.server
import io
import threading
import uuid
import zipfile
from collections.abc import Iterator

import kfp_server_api
import pytest
import requests
import yaml

from tests.localkfp.conftest import SPEC, HeldExecutor, client_for, upload_spec

pytestmark = pytest.mark.e2e  # real servers on free ports

RAW = "https://raw.githubusercontent.com/org/repo/main"  # a host on KFP's default allow-list


@pytest.fixture
def server(make_server):
    return make_server(executor_factory=HeldExecutor)


@pytest.fixture
def network(server) -> Iterator[dict[str, tuple[int, bytes]]]:
    """Stands in for the internet the machine lacks: allow-listed hosts resolve to a public
    address and a GET of a URL in the dict answers its (status, body); others are 404."""
    answers: dict[str, tuple[int, bytes]] = {}
    pipelines = server.services.pipelines
    pipelines.resolver = lambda host: ["140.82.112.4"]
    pipelines.fetcher = lambda url: answers.get(url, (404, b"not found"))
    return answers


def _grpc_error(response: requests.Response, status: int, code: int) -> str:
    """The message of grpc-gateway's error body, asserting its HTTP status and gRPC code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"code", "message"} and body["code"] == code, body
    return body["message"]


def _upload_error(response: requests.Response, status: int) -> str:
    """The message of the upload endpoints' error body
    (backend/src/apiserver/server/pipeline_upload_server.go, writeErrorToResponse)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error_message", "error_details"}, body
    return body["error_message"]


def _upload(server, filename: str, data: bytes, **params: str) -> requests.Response:
    return requests.post(
        f"{server.url}/apis/v2beta1/pipelines/upload",
        params=params,
        files={"uploadfile": (filename, data)},
        timeout=30,
    )


def _versions(server, pipeline_id: str) -> list[dict]:
    url = f"{server.url}/apis/v2beta1/pipelines/{pipeline_id}/versions"
    return requests.get(url).json().get("pipeline_versions", [])


class _Counting(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        body = yaml.safe_dump(SPEC).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_versions_need_a_package_url_and_the_body_pipeline_id(server, network) -> None:
    """CreatePipelineVersion (backend/src/apiserver/server/pipeline_server.go) refuses a
    version without package_url.pipeline_url (an inline pipeline_spec is not read) and one
    whose body lacks pipeline_id, with 400 / 3; CreatePipelineAndVersion needs the URL too."""
    pipeline = upload_spec(server, "parent")
    url = f"{server.url}/apis/v2beta1/pipelines/{pipeline['pipeline_id']}/versions"
    inline = requests.post(url, json={"name": "v", "pipeline_spec": SPEC})
    assert "Package URL is nil" in _grpc_error(inline, 400, 3)
    empty = requests.post(url, json={"name": "v", "package_url": {"pipeline_url": ""}})
    assert "Package URL is empty" in _grpc_error(empty, 400, 3)
    network[f"{RAW}/pipeline.yaml"] = (200, yaml.safe_dump(SPEC).encode())
    no_parent = requests.post(
        url, json={"name": "v", "package_url": {"pipeline_url": f"{RAW}/pipeline.yaml"}}
    )
    assert "Parent pipeline id is empty" in _grpc_error(no_parent, 400, 3)
    both = requests.post(
        f"{server.url}/apis/v2beta1/pipelines/create",
        json={"pipeline": {"name": "inline"}, "pipeline_version": {"pipeline_spec": SPEC}},
    )
    assert "pipeline spec URL" in _grpc_error(both, 400, 3)
    assert len(_versions(server, pipeline["pipeline_id"])) == 1  # the uploaded one only
    assert client_for(server).get_pipeline_id("inline") is None


def test_package_urls_are_checked_and_loopback_is_never_fetched(server) -> None:
    """validation/pipeline_url.go: https only, port 443, an allow-listed host, no loopback /
    private / link-local address. The embedded server fetches nothing of the sort for anyone:
    a spec served on this machine's loopback is refused without a request reaching it."""
    _Counting.hits = 0
    local = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    threading.Thread(target=local.serve_forever, daemon=True).start()
    try:
        pipeline = upload_spec(server, "checked")
        url = f"{server.url}/apis/v2beta1/pipelines/{pipeline['pipeline_id']}/versions"
        port = local.server_address[1]
        refused = {
            f"http://127.0.0.1:{port}/pipeline.yaml": "scheme",
            f"https://127.0.0.1:{port}/pipeline.yaml": "port",
            "https://127.0.0.1/pipeline.yaml": "allowlist",
            "https://localhost/pipeline.yaml": "allowlist",
            f"{server.url}/pipeline.yaml": "scheme",
            "http://raw.githubusercontent.com/o/r/pipeline.yaml": "scheme",
            "https://github.com:8443/o/r/pipeline.yaml": "port",
            "https://example.com/pipeline.yaml": "allowlist",
            "not a url": "invalid URL",
            # urlsplit reads github.com, urllib3 (which connects) reads 127.0.0.1:port
            f"https://127.0.0.1:{port}\\@github.com/pipeline.yaml": "invalid URL",
            f"https://user@127.0.0.1:{port}@github.com/pipeline.yaml": "invalid URL",
        }
        for package_url, words in refused.items():
            body = {
                "name": f"v-{uuid.uuid4().hex[:6]}",
                "pipeline_id": pipeline["pipeline_id"],
                "package_url": {"pipeline_url": package_url},
            }
            message = _grpc_error(requests.post(url, json=body), 400, 3)
            assert "Pipeline URL validation failed" in message and words in message, message
        # an allow-listed name that resolves to a private address is refused too
        server.services.pipelines.resolver = lambda host: ["10.1.2.3"]
        body["package_url"] = {"pipeline_url": f"{RAW}/pipeline.yaml"}
        assert "blocked IP range" in _grpc_error(requests.post(url, json=body), 400, 3)
        assert _Counting.hits == 0
        assert len(_versions(server, pipeline["pipeline_id"])) == 1
    finally:
        local.shutdown()
        local.server_close()


def test_a_version_from_an_allowed_url_is_read_under_its_file_name(server, network) -> None:
    """pipeline_server.go reads the fetched file under path.Base(url) (so a .txt URL is not
    a pipeline), answers 400 when the fetch is not 200, and names a pipeline created with
    CreatePipelineAndVersion after the file when it has no name; the version takes the
    pipeline's name, display name and description."""
    spec_url = f"{RAW}/pipeline.yaml"
    network[spec_url] = (200, yaml.safe_dump(SPEC).encode())
    network[f"{RAW}/notes.txt"] = (200, yaml.safe_dump(SPEC).encode())
    base = f"{server.url}/apis/v2beta1"
    created = requests.post(
        f"{base}/pipelines/create",
        json={
            "pipeline": {"description": "from a URL"},
            "pipeline_version": {"name": "ignored", "package_url": {"pipeline_url": spec_url}},
        },
    )
    assert created.status_code == 200, created.text
    pipeline = created.json()
    assert pipeline["name"] == pipeline["display_name"] == "pipeline.yaml"
    (first,) = _versions(server, pipeline["pipeline_id"])
    assert first["name"] == "pipeline.yaml" and first["description"] == "from a URL"
    assert first["package_url"] == {"pipeline_url": spec_url} and first["pipeline_spec"] == SPEC

    url = f"{base}/pipelines/{pipeline['pipeline_id']}/versions"
    body = {"pipeline_id": "any non-empty id: the path's is used", "display_name": "v2"}
    added = requests.post(url, json={**body, "package_url": {"pipeline_url": spec_url}})
    assert added.status_code == 200, added.text
    assert added.json()["name"] == "v2" and added.json()["pipeline_id"] == pipeline["pipeline_id"]
    text = requests.post(url, json={**body, "package_url": {"pipeline_url": f"{RAW}/notes.txt"}})
    assert "unexpected pipeline file format" in _grpc_error(text, 400, 3)
    gone = requests.post(url, json={**body, "package_url": {"pipeline_url": f"{RAW}/gone.yaml"}})
    assert "Request returned 404" in _grpc_error(gone, 400, 3)
    assert [v["name"] for v in _versions(server, pipeline["pipeline_id"])] == [
        "pipeline.yaml",
        "v2",
    ]


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_upload_validation_is_kfps(server) -> None:
    """Uploads as KFP checks them: ReadPipelineFile (server/util.go) picks the format from
    the file name (.yaml/.yml/.json) or finds a .zip/.tar.gz by its bytes, else 400;
    NewV2SpecTemplate (template/v2_template.go) needs schemaVersion 2.1.0;
    ValidatePipelineName (common/utils.go) needs pipelineInfo.name to match
    ^[a-z0-9][a-z0-9-]{0,127}$; a nameless upload is named after the file, extension
    included (pipeline_upload_server.go, buildPipelineName)."""
    data = yaml.safe_dump(SPEC).encode()
    nameless = _upload(server, "my-pipeline.yaml", data)
    assert nameless.status_code == 200, nameless.text
    assert nameless.json()["name"] == nameless.json()["display_name"] == "my-pipeline.yaml"
    zipped = _upload(server, "package", _zip({"pipeline.yaml": data}), name="zipped")
    assert zipped.status_code == 200, zipped.text

    refusals = [
        ("pipeline", data, "unexpected pipeline file format"),
        ("pipeline.txt", data, "unexpected pipeline file format"),
        ("p.zip", _zip({"README.md": b"x", "p.json": data}), "expecting a pipeline.yaml"),
        ("p.yaml", yaml.safe_dump({**SPEC, "schemaVersion": "2.0.0"}).encode(), "2.1.0"),
        ("p.yaml", yaml.safe_dump({**SPEC, "pipelineInfo": {"name": "My_Pipe"}}).encode(), "'-'"),
        ("p.yaml", yaml.safe_dump({**SPEC, "pipelineInfo": {"name": "a" * 129}}).encode(), "128"),
    ]
    for filename, package, words in refusals:
        message = _upload_error(_upload(server, filename, package, name=uuid.uuid4().hex), 400)
        assert words in message, message
    listed = requests.get(f"{server.url}/apis/v2beta1/pipelines").json()
    assert sorted(p["name"] for p in listed["pipelines"]) == ["my-pipeline.yaml", "zipped"]


def test_kfp_client_uploads_name_the_pipeline_after_its_spec(server, compiled) -> None:
    """kfp.Client.upload_pipeline without a name sends pipelineInfo.name as the name."""
    client = client_for(server)
    pipeline = client.upload_pipeline(str(compiled["add_subtract_multiply"]))
    assert pipeline.name == "add-subtract-multiply"


def test_delete_of_a_pipeline_with_versions_is_400_code_3(server) -> None:
    """resource_manager.go DeletePipeline: util.NewInvalidInputError, so 400 with gRPC code 3
    (not 9); the pipeline stays."""
    pipeline = upload_spec(server, "kept")
    url = f"{server.url}/apis/v2beta1/pipelines/{pipeline['pipeline_id']}"
    assert "cascade=true" in _grpc_error(requests.delete(url), 400, 3)
    assert requests.get(url).status_code == 200
    with pytest.raises(kfp_server_api.ApiException) as error:
        client_for(server).delete_pipeline(pipeline["pipeline_id"])
    assert error.value.status == 400


def test_upload_version_to_an_unknown_pipeline_is_400_with_error_message(server) -> None:
    """pipeline_upload_server.go UploadPipelineVersion: the pipeline's namespace cannot be
    fetched, so 400 {"error_message", "error_details"}; no pipelineid is 400 too."""
    url = f"{server.url}/apis/v2beta1/pipelines/upload_version"
    files = {"uploadfile": ("p.yaml", yaml.safe_dump(SPEC))}
    unknown = str(uuid.uuid4())
    response = requests.post(url, params={"pipelineid": unknown, "name": "v"}, files=files)
    assert unknown in _upload_error(response, 400)
    assert "pipelineid" in _upload_error(requests.post(url, files=files), 400)
    duplicate = upload_spec(server, "dup")
    again = _upload(server, "p.yaml", yaml.safe_dump(SPEC).encode(), name="dup")
    assert "already exists" in _upload_error(again, 409)
    assert duplicate["name"] == "dup"


def test_names_as_kfp_checks_them(server, network) -> None:
    """A pipeline name over 128 bytes or a version name over 127 bytes in a JSON body is a
    500 / 13 (api_converter.go: ValidateModel wrapped in an internal error), in an upload a
    400 (validation/length.go ValidateFieldLength); an empty name is a 400 / 3
    (pipeline_server.go: "name is required") - not the 500 kfp-fidelity.md's table says.
    Blank or odd names are stored as given."""
    base = f"{server.url}/apis/v2beta1"
    too_long = requests.post(f"{base}/pipelines", json={"name": "é" * 65})  # 130 bytes
    assert "length cannot exceed 128" in _grpc_error(too_long, 500, 13)
    namespace = requests.post(f"{base}/pipelines", json={"name": "ns", "namespace": "n" * 64})
    assert "Namespace length cannot exceed 63" in _grpc_error(namespace, 500, 13)
    assert "name is required" in _grpc_error(requests.post(f"{base}/pipelines", json={}), 400, 3)
    exact = requests.post(f"{base}/pipelines", json={"name": "x" * 128})
    assert exact.status_code == 200, exact.text
    blank = requests.post(f"{base}/pipelines", json={"name": "   "})
    assert blank.status_code == 200 and blank.json()["name"] == "   "

    network[f"{RAW}/pipeline.yaml"] = (200, yaml.safe_dump(SPEC).encode())
    pipeline_id = exact.json()["pipeline_id"]
    url = f"{base}/pipelines/{pipeline_id}/versions"
    body = {"pipeline_id": pipeline_id, "package_url": {"pipeline_url": f"{RAW}/pipeline.yaml"}}
    long_version = requests.post(url, json={**body, "name": "v" * 128})
    assert "PipelineVersion.Name length cannot exceed 127" in _grpc_error(long_version, 500, 13)
    assert requests.post(url, json={**body, "name": "v" * 127}).status_code == 200
    assert "name is required" in _grpc_error(requests.post(url, json=body), 400, 3)
    upload = upload_spec(server, "short")
    response = requests.post(
        f"{base}/pipelines/upload_version",
        params={"pipelineid": upload["pipeline_id"], "name": "v" * 128},
        files={"uploadfile": ("p.yaml", yaml.safe_dump(SPEC))},
    )
    assert "cannot exceed 127" in _upload_error(response, 400)
    long_upload = _upload(server, "p.yaml", yaml.safe_dump(SPEC).encode(), name="p" * 129)
    assert "cannot exceed 128" in _upload_error(long_upload, 400)


def test_versions_are_looked_up_by_their_id_alone(server) -> None:
    """GetPipelineVersion and DeletePipelineVersion (server/pipeline_server.go) pass only
    the version id to the resource manager: the path's pipeline id does not have to be the
    version's parent."""
    owner = upload_spec(server, "owner")
    other = upload_spec(server, "other")
    (version,) = _versions(server, owner["pipeline_id"])
    url = f"{server.url}/apis/v2beta1/pipelines/{other['pipeline_id']}/versions"
    got = requests.get(f"{url}/{version['pipeline_version_id']}")
    assert got.status_code == 200 and got.json()["pipeline_id"] == owner["pipeline_id"]
    assert requests.delete(f"{url}/{version['pipeline_version_id']}").status_code == 200
    assert _versions(server, owner["pipeline_id"]) == []
    _grpc_error(requests.get(f"{url}/{version['pipeline_version_id']}"), 404, 5)


def test_upload_tags_and_code_source_url_query_parameters(server) -> None:
    """pipeline_upload_server.go reads `tags` (a JSON object of strings: the pipeline's on
    upload, the version's on upload_version; anything else is a 400) and `code_source_url`."""
    data = yaml.safe_dump(SPEC).encode()
    tagged = _upload(server, "p.yaml", data, name="tagged", tags='{"team": "ran"}')
    assert tagged.status_code == 200, tagged.text
    assert tagged.json()["tags"] == {"team": "ran"}
    bad = _upload(server, "p.yaml", data, name="bad-tags", tags='{"n": 1}')
    assert "tags query parameter" in _upload_error(bad, 400)
    version = requests.post(
        f"{server.url}/apis/v2beta1/pipelines/upload_version",
        params={
            "pipelineid": tagged.json()["pipeline_id"],
            "name": "v2",
            "tags": '{"stage": "test"}',
            "code_source_url": "https://github.com/org/repo",
        },
        files={"uploadfile": ("p.yaml", data)},
    )
    assert version.status_code == 200, version.text
    assert version.json()["tags"] == {"stage": "test"}
    assert version.json()["code_source_url"] == "https://github.com/org/repo"


def test_experiment_names_as_kfp_checks_them(server) -> None:
    """toModelExperiment (backend/src/apiserver/server/api_converter.go): an empty name, a
    name over 128 bytes or a namespace over 63 is an internal error, 500 / 13, and nothing
    is stored; a 128-byte or blank name is stored."""
    url = f"{server.url}/apis/v2beta1/experiments"
    before = requests.get(url).json().get("total_size", 0)
    assert "non-empty name" in _grpc_error(requests.post(url, json={}), 500, 13)
    long_name = requests.post(url, json={"display_name": "é" * 65})
    assert "Experiment.Name length cannot exceed 128" in _grpc_error(long_name, 500, 13)
    namespace = requests.post(url, json={"display_name": "ns", "namespace": "n" * 64})
    assert "Namespace length cannot exceed 63" in _grpc_error(namespace, 500, 13)
    assert requests.get(url).json().get("total_size", 0) == before
    for name in ("x" * 128, "   "):
        assert requests.post(url, json={"display_name": name}).status_code == 200
