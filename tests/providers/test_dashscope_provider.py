"""DashScope's answers, pure: task states and failures (its code and message kept verbatim), and error bodies."""

from __future__ import annotations

from typing import Any

import pytest

from vidgate.errors import UpstreamFailure, UpstreamRejected, UpstreamTransient
from vidgate.providers import dashscope
from vidgate.providers.dashscope import parse_progress

# A FAILED task as providers.md §2.6 records it: the error sits flat inside `output`.
RECORDED_FAILED: dict[str, Any] = {
    "request_id": "5c8a3e1f-7c2b-9d61-a1f4-1c9e0d3b2a10",
    "output": {
        "task_id": "0385dc79-5ff8-4d82-bcb6-xxxxxx",
        "task_status": "FAILED",
        "code": "InvalidParameter",
        "message": "prompt must contain words",
        "submit_time": "2025-09-25 11:07:28.590",
        "scheduled_time": "2025-09-25 11:07:35.349",
        "end_time": "2025-09-25 11:07:36.012",
    },
}


def failed_with(**output: Any) -> dict[str, Any]:
    return {**RECORDED_FAILED, "output": {**RECORDED_FAILED["output"], **output}}


def test_a_failed_task_keeps_dashscopes_code_and_message() -> None:
    failed = parse_progress(RECORDED_FAILED)
    assert (failed.state, failed.error_code) == ("failed", "generation_failed")
    assert failed.error_message == "DashScope: InvalidParameter: prompt must contain words"
    blocked = parse_progress(
        failed_with(code="DataInspectionFailed", message="Output data may contain inappropriate content.")
    )
    assert blocked.error_code == "content_policy_violation"
    assert blocked.error_message == "DashScope: DataInspectionFailed: Output data may contain inappropriate content."
    # The DashScope surface reads DashScope's own code and message back from the stored text.
    said = UpstreamFailure.parse(blocked.error_message)
    assert said == UpstreamFailure(
        "DashScope", "DataInspectionFailed", "Output data may contain inappropriate content."
    )
    bare = parse_progress(failed_with(code=None, message=None))
    assert (bare.error_code, bare.error_message) == ("generation_failed", "DashScope: no reason given")
    assert UpstreamFailure.parse(bare.error_message) is None


def test_cancelled_and_unknown_tasks() -> None:
    cancelled = parse_progress(failed_with(task_status="CANCELED", code=None, message=None))
    assert (cancelled.state, cancelled.error_code) == ("cancelled", "cancelled")
    unknown = parse_progress({"request_id": "r", "output": {"task_id": "t", "task_status": "UNKNOWN"}})
    assert (unknown.state, unknown.error_code) == ("failed", "upstream_task_lost")
    assert unknown.error_message is not None and unknown.error_message.startswith("DashScope: task_status UNKNOWN")
    # Not a DashScope code: the DashScope surface shows ours instead of inventing one.
    assert UpstreamFailure.parse(unknown.error_message) is None


@pytest.mark.parametrize(
    ("status", "body", "policy"),
    [
        (400, {"code": "InvalidParameter", "message": "The size is not supported by model"}, False),
        (400, {"code": "DataInspectionFailed", "message": "Input data may contain inappropriate content."}, True),
        (400, {"code": "IPInfringementSuspect", "message": "Input data is suspected of IP infringement."}, True),
        (400, {"code": "InvalidParameter.DataInspection", "message": "The media format is not supported."}, False),
    ],
)
def test_a_refusal_keeps_dashscopes_code_and_message(status: int, body: dict[str, Any], policy: bool) -> None:
    error = dashscope._error(status, {"request_id": "r", **body})
    assert isinstance(error, UpstreamRejected)
    assert error.upstream == UpstreamFailure("DashScope", body["code"], body["message"])
    assert error.message == f"DashScope: {body['code']}: {body['message']}"
    assert error.code == ("content_policy_violation" if policy else None)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, "InvalidApiKey"),
        (403, "AccessDenied"),
        (400, "Arrearage"),
        (429, "Throttling"),
        (500, "InternalError"),
        (404, "NotFound"),  # "url error": the channel's endpoint, not the request
    ],
)
def test_account_and_passing_errors_are_transient(status: int, code: str) -> None:
    assert isinstance(dashscope._error(status, {"code": code, "message": "m"}), UpstreamTransient)
