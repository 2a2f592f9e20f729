"""redact_text: values that look like secrets are masked inside free text (errors, events, logs)."""

from __future__ import annotations

import pytest

from vk_provider.log import redact_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def.ghi for user", "Authorization: Bearer *** for user"),
        ("authorization=Basic dXNlcjpwdw==", "authorization=Basic ***"),
        ("header Bearer abc.def", "header Bearer ***"),
        ("password: hunter2", "password: ***"),
        ("Password=x&y=1", "Password=***&y=1"),
        ('"AccessKeySecret": "s3cr3t"', '"AccessKeySecret": "***"'),
        ("access_key_secret=abc,next", "access_key_secret=***,next"),
        ("Signature=abc%2B", "Signature=***"),
        ("nothing to hide here", "nothing to hide here"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected
