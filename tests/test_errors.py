"""UpstreamFailure: how an upstream's own code and message read in a task's error, and back."""

from __future__ import annotations

import pytest

from vidgate.errors import UpstreamFailure


@pytest.mark.parametrize(
    ("failure", "text"),
    [
        (UpstreamFailure("Vidu", "TaskPromptPolicyViolation", "bad: x"), "Vidu: TaskPromptPolicyViolation: bad: x"),
        (
            UpstreamFailure("Vidu", "CreationPolicyViolation", note="Blocked."),
            "Vidu: CreationPolicyViolation - Blocked.",
        ),
        (
            UpstreamFailure("Kling", message="Failure to pass the risk control"),
            "Kling: Failure to pass the risk control",
        ),
        (UpstreamFailure("DashScope", "InternalError"), "DashScope: InternalError"),
        (UpstreamFailure("Upstream"), "Upstream: no reason given"),
    ],
)
def test_text(failure: UpstreamFailure, text: str) -> None:
    assert failure.text() == text


def test_parse_gives_back_a_code_and_its_message_verbatim() -> None:
    for failure in (
        UpstreamFailure("DashScope", "DataInspectionFailed", "Output data: may contain\ninappropriate content."),
        UpstreamFailure("DashScope", "InternalError.Algo"),
        UpstreamFailure("Jimeng", "50413", "Post Text Risk Not Pass"),
    ):
        assert UpstreamFailure.parse(failure.text()) == failure
    # Texts without a code (or not written by text() at all) are not taken apart.
    for text in (
        "Kling: Failure to pass the risk control system",
        "The task did not finish before its deadline.",
        None,
    ):
        assert UpstreamFailure.parse(text) is None
