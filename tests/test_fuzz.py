"""schemathesis against the OpenAPI document of a running `vidgate serve`, with a valid key.

Every operation in /openapi.json is called with what its schema allows and with what it forbids (coverage:
each field missing, mistyped, out of range; undeclared methods), then at random (fuzzing), then in chains
that follow the ids one answer gives to the next call (stateful). Any 5xx fails, and so does any answer
that the document does not describe: an undocumented status, another content type, a body with a field
more or less than its schema. The cases are the same on every run (deterministic generation), and the run
is bounded (tests/fuzz/schemathesis.toml): at most 500 cases in at most 90 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Server, running_gateway

CONFIG = Path(__file__).parent / "fuzz" / "schemathesis.toml"
MAX_CASES = 500
MAX_SECONDS = 90


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # One render worker: the cases that create videos must not starve the rest of the machine.
    with running_gateway(
        tmp_path_factory.mktemp("fuzz"), settings="poll_interval_s = 0.2\nlocal_workers = 1\n"
    ) as server:
        yield server


def test_the_api_answers_as_its_openapi_document_says(fuzzed: Server, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(CONFIG),
            "run",
            f"{fuzzed.url}/openapi.json",
            "--report",
            "json",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=MAX_SECONDS * 2,
        cwd=tmp_path,  # whatever schemathesis writes stays out of the working tree
        # The key reaches schemathesis through its config (${VIDGATE_FUZZ_KEY}), never a command line.
        env={**os.environ, "VIDGATE_FUZZ_KEY": fuzzed.key("fuzz")},
    )
    reports = list(tmp_path.glob("json-*.json"))
    assert reports, result.stdout[-5000:] + result.stderr[-3000:]
    report = json.loads(reports[0].read_text())
    cases, took = report["test_cases"]["generated"], report["running_time"]
    print(f"schemathesis: {cases} cases in {took:.1f} s")
    assert result.returncode == 0 and report["exit_code"] == 0, result.stdout[-12000:]
    assert report["complete"] and report["test_cases"]["with_failures"] == 0
    # It really ran: every documented operation but the one excluded by the config, and hundreds of cases.
    assert report["operations"]["tested"] >= 17 and report["operations"]["errored"] == 0, report["operations"]
    assert 200 <= cases <= MAX_CASES, cases
    assert took <= MAX_SECONDS, took
    # Nothing failed behind the answers either (the poller, the renders of the videos it created).
    assert "Traceback" not in fuzzed.log.read_text()


# -- what the fuzzer found, pinned as plain tests ------------------------------------------------------------


def test_model_info_declares_every_field_the_route_returns(fuzzed: Server) -> None:
    schemas = httpx.get(f"{fuzzed.url}/openapi.json").json()["components"]["schemas"]
    model = httpx.get(f"{fuzzed.url}/v1/models", headers={"Authorization": f"Bearer {fuzzed.key('fuzz')}"}).json()
    declared = schemas["ModelInfo"]
    assert set(model["data"][0]) == set(declared["properties"]) and declared["additionalProperties"] is False


def test_405_allows_every_method_of_the_path(fuzzed: Server) -> None:
    # Starlette named only the first route of the path: GET and POST /v1/videos are two routes.
    response = httpx.request("OPTIONS", f"{fuzzed.url}/v1/videos")
    assert response.status_code == 405 and response.headers["allow"] == "GET, POST"
    assert response.json()["error"]["message"] == "Method not allowed."
    response = httpx.request("TRACE", f"{fuzzed.url}/api/v1/tasks/x")
    assert response.status_code == 405 and response.headers["allow"] == "GET"
    assert response.json()["code"] == "MethodNotAllowed"


def test_a_non_ascii_upload_signature_is_refused_not_a_500(fuzzed: Server) -> None:
    response = httpx.post(
        f"{fuzzed.url}/api/v1/uploads/oss",
        data={"policy": "e30=", "Signature": "é", "key": "dashscope-instant/x/y.png"},
        files={"file": ("y.png", b"\x89PNG", "image/png")},
    )
    assert response.status_code == 403 and response.json()["code"] == "AccessDenied"


def test_a_hint_that_is_not_a_boolean_is_a_400(fuzzed: Server) -> None:
    response = httpx.post(
        f"{fuzzed.url}/api/v1/services/aigc/video-generation/video-synthesis",
        headers={"Authorization": f"Bearer {fuzzed.key('fuzz')}", "X-DashScope-Async": "enable"},
        json={"model": "vidgate-local", "input": {"prompt": "x"}, "parameters": {"prompt_extend": {}}},
    )
    assert response.status_code == 400 and "parameters.prompt_extend" in response.json()["message"]


def test_a_malformed_range_is_ignored_not_a_plain_text_400(fuzzed: Server) -> None:
    headers = {"Authorization": f"Bearer {fuzzed.key('fuzz')}"}
    with httpx.Client(base_url=f"{fuzzed.url}/v1", headers=headers, timeout=30) as client:
        video = client.post("/videos", json={"prompt": "range", "seconds": "1", "size": "64x64"}).json()
        deadline = time.monotonic() + 60
        while client.get(f"/videos/{video['id']}").json()["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        whole = client.get(f"/videos/{video['id']}/content").content
        for bad in ("bytes=abc", "bytes=5-2", "items=0-1", "bytes="):
            response = client.get(f"/videos/{video['id']}/content", headers={"Range": bad})
            assert response.status_code == 200 and response.content == whole, bad
        response = client.get(f"/videos/{video['id']}/content", headers={"Range": f"bytes={len(whole)}-"})
        assert response.status_code == 416
