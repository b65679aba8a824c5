"""Storage helpers: which URIs take the user's storage options, pyarrow views of fsspec, and
redaction of the secrets a URI can carry before it is stored, printed or rendered."""

from __future__ import annotations

import re

from fsspec.core import url_to_fs

from fv2es.errors import UserError

# A URI inside free text (an exception message): a scheme, "://", then up to whitespace or a
# quote, not counting punctuation that ends a sentence ("cannot open s3://b/x: ...").
_URI_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,:;!)\]]")


class StorageError(UserError):
    """A store that cannot be used as given: no or wrong credentials, a bucket that does not exist,
    an endpoint that does not answer, a folder that cannot be written."""


def options_for(uri: str, options: dict | None) -> dict:
    """The storage options that apply to ``uri``: the given ones for remote URIs, none for local paths."""
    return dict(options or {}) if "://" in uri and not uri.startswith("file://") else {}


def arrow_filesystem(uri: str, options: dict | None = None):
    """``(pyarrow filesystem, path)`` for ``uri``, through fsspec, so Ray Data and Ray Train see the
    same storage (S3 endpoints, credentials) as the rest of fv2es."""
    from pyarrow.fs import FSSpecHandler, LocalFileSystem, PyFileSystem

    fs, path = url_to_fs(uri, **options_for(uri, options))
    if "://" not in uri or uri.startswith("file://"):
        return LocalFileSystem(), path
    return PyFileSystem(FSSpecHandler(fs)), path


def redact_uri(uri: str) -> str:
    """``uri`` without the parts that can carry secrets: userinfo and the query string (and fragment).

    ``s3://key:secret@bucket/x`` becomes ``s3://bucket/x``; a presigned
    ``https://host/x.mp4?X-Amz-Credential=...&X-Amz-Signature=...`` becomes ``https://host/x.mp4``.
    The whole query goes, not just known credential keys: signing schemes differ by provider
    (``X-Amz-*``, ``AWSAccessKeyId``/``Signature``, Azure's ``sig``, GCS's ``X-Goog-*``, ``token``),
    and a redacted URI is for display, never for opening. Local paths and ``file://`` URIs are
    returned unchanged (a ``?`` there is part of a file name). Chained fsspec URIs
    (``simplecache::s3://...``) are redacted part by part.
    """
    if "::" in uri:
        return "::".join(redact_uri(part) for part in uri.split("::"))
    if "://" not in uri or uri.startswith("file://"):
        return uri
    scheme, _, rest = uri.partition("://")
    # Parsed by hand, not with urllib: an AWS secret key often holds "/" and "+", which a URL
    # parser takes for the start of the path, leaving the secret in the "host".
    rest = re.split(r"[?#]", rest, maxsplit=1)[0]
    user, at, host_path = rest.rpartition("@")
    # "key:secret@" or "user@host": drop it. An "@" inside a path ("bucket/team@x/v.mp4") is kept.
    if at and (":" in user or "/" not in user):
        rest = host_path
    return f"{scheme}://{rest}"


def redact_text(text: str, uri: str | None = None) -> str:
    """``text`` with every URI in it passed through :func:`redact_uri`, and, when ``uri`` is given,
    its secret parts removed wherever they appear on their own (an exception message may quote
    the path an fsspec filesystem derived from ``uri``, userinfo included, without the scheme)."""
    text = _URI_IN_TEXT.sub(lambda m: redact_uri(m.group(0)), text)
    for secret in _secret_parts(uri) if uri else ():
        text = text.replace(secret, "")
    return text


def _secret_parts(uri: str) -> list[str]:
    """The substrings of ``uri`` that :func:`redact_uri` drops (``user:pass@``, ``?query``, ``#frag``)."""
    parts = []
    for piece in uri.split("::"):
        kept = redact_uri(piece)
        if kept == piece:
            continue
        rest = piece.partition("://")[2]
        before_query = re.split(r"[?#]", rest, maxsplit=1)[0]
        # redact_uri keeps a suffix of what precedes the query: the rest of it is the userinfo.
        parts.append(before_query[: len(before_query) - len(kept.partition("://")[2])])
        parts.append(rest[len(before_query) :])  # the query and fragment
    # Longest first, so a secret that contains another is removed whole.
    return sorted((p for p in parts if p), key=len, reverse=True)


# S3 error codes -> what the user should hear (wrong credentials are told apart from a missing bucket).
_S3_ERRORS = {
    "NoSuchBucket": "bucket {bucket!r} does not exist (fv2es never creates buckets: create it, or fix the name)",
    "InvalidAccessKeyId": "the S3 access key is not known to the store (wrong credentials)",
    "SignatureDoesNotMatch": "the S3 secret key does not match the access key (wrong credentials)",
    "InvalidToken": "the S3 session token is invalid (wrong or expired credentials)",
    "ExpiredToken": "the S3 session token has expired (refresh the credentials)",
    "AccessDenied": "access denied to bucket {bucket!r} (the credentials lack permission for it)",
    "403": "access denied to bucket {bucket!r} (wrong credentials, or they lack permission for it)",
    "404": "bucket {bucket!r} does not exist (fv2es never creates buckets: create it, or fix the name)",
}


def check_access(uri: str, options: dict | None, what: str) -> None:
    """For an ``s3://`` URI, before any work: the credentials are there and accepted and the bucket
    exists (one request: list at most one key under the URI). Raises :class:`StorageError` with one
    line naming ``what`` (``"output"``, ``"input"``, ``"checkpoint"``) and the problem. Creates nothing.
    Other URIs are left to the job (local paths are checked where they are used)."""
    if not uri.startswith(("s3://", "s3a://")):
        return
    import botocore.exceptions as bx

    fs, path = url_to_fs(uri, **options_for(uri, options))
    bucket, _, prefix = path.partition("/")
    where = f"{what} {redact_uri(uri)}"
    try:
        fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except bx.NoCredentialsError:
        raise StorageError(f"{where}: no S3 credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                           "(or AWS_PROFILE, or run with an instance role)") from None
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError) as e:
        raise StorageError(f"{where}: cannot reach the S3 endpoint ({redact_text(str(e))}); check "
                           "--endpoint-url / AWS_ENDPOINT_URL") from None
    except OSError as e:
        cause = e.__cause__ if isinstance(e.__cause__, bx.ClientError) else None
        code = cause.response.get("Error", {}).get("Code", "") if cause is not None else ""
        if code not in _S3_ERRORS:
            code = {FileNotFoundError: "404", PermissionError: "403"}.get(type(e), code)
        if code in _S3_ERRORS:
            raise StorageError(f"{where}: {_S3_ERRORS[code].format(bucket=bucket)}") from None
        raise
