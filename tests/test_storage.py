"""Redaction of the secrets a URI can carry (issue 14, item 2)."""

from __future__ import annotations

import pytest

from fv2es.failures import UNREADABLE
from fv2es.media.decode import decode
from fv2es.storage import redact_text, redact_uri

PRESIGNED_V4 = (
    "https://bucket.s3.us-east-1.amazonaws.com/videos/a.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z"
    "&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=0123456789abcdef"
)
PRESIGNED_V2 = "https://bucket.s3.amazonaws.com/ckpt/model.safetensors?AWSAccessKeyId=AKIAEXAMPLE&Signature=abc%2Bdef%3D&Expires=1767225600"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://key:secret@bucket/x", "s3://bucket/x"),
        # AWS secret keys hold "/" and "+": a URL parser would take the secret for the host.
        ("s3://AKIAEXAMPLE:wJalr/XUtnF+EMI@bucket/videos/a.mp4", "s3://bucket/videos/a.mp4"),
        ("s3://user@bucket/x.mp4", "s3://bucket/x.mp4"),
        (PRESIGNED_V4, "https://bucket.s3.us-east-1.amazonaws.com/videos/a.mp4"),
        (PRESIGNED_V2, "https://bucket.s3.amazonaws.com/ckpt/model.safetensors"),
        ("https://acct.blob.core.windows.net/c/v.mp4?sv=2022&sig=AbC%3D", "https://acct.blob.core.windows.net/c/v.mp4"),
        ("https://host/v.mp4#access_token=abc", "https://host/v.mp4"),
        ("https://user:pw@host:8443/v.mp4?token=t", "https://host:8443/v.mp4"),
        ("simplecache::s3://key:secret@bucket/x", "simplecache::s3://bucket/x"),
        ("s3://bucket/team@example/v.mp4", "s3://bucket/team@example/v.mp4"),  # an "@" in a key stays
        ("s3://bucket/videos/a.mp4", "s3://bucket/videos/a.mp4"),
        ("memory://videos/a.mp4", "memory://videos/a.mp4"),
        ("/data/videos/what?.mp4", "/data/videos/what?.mp4"),  # a local name may hold "?" and "@"
        ("videos/a@b.mp4", "videos/a@b.mp4"),
        ("file:///data/videos/what?.mp4", "file:///data/videos/what?.mp4"),
        ("", ""),
    ],
)
def test_redact_uri(uri, expected):
    assert redact_uri(uri) == expected
    assert redact_uri(expected) == expected  # idempotent


def test_redact_text_redacts_every_uri_and_the_given_uris_secret_parts():
    text = f"cannot open {PRESIGNED_V2}: 403; also 's3://k:s@b/x' and /k:s@b/x?sig=1"
    out = redact_text(text, "s3://k:s@b/x?sig=1")
    assert out == "cannot open https://bucket.s3.amazonaws.com/ckpt/model.safetensors: 403; also 's3://b/x' and /b/x"
    assert redact_text("no uri here") == "no uri here"


def test_decode_errors_do_not_echo_secrets():
    # The memory filesystem quotes the path it derived (userinfo included) in its error.
    uri = "memory://AKIAEXAMPLE:wJalr/XUtnF+EMI@bucket/videos/a.mp4?X-Amz-Signature=0123abcd"
    (row,) = decode(uri)
    assert row.status == UNREADABLE
    assert "bucket/videos/a.mp4" in row.error
    for secret in ("AKIAEXAMPLE", "wJalr", "XUtnF", "X-Amz", "0123abcd"):
        assert secret not in row.error
