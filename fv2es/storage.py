"""Storage helpers: which URIs take the user's storage options, and pyarrow views of fsspec."""

from __future__ import annotations

from fsspec.core import url_to_fs


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
