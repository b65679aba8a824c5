"""Failure kinds shared by every media stage and the readers under ``fv2es.data``.

A leaf module (imports nothing), so ``fv2es.data`` and ``fv2es.media`` both stand on it.

A bad input is a value, not a crash: stages catch :class:`MediaError` (and anything else a
decoder raises) and turn it into a row with ``status`` set to one of the kinds below and
``error`` set to a human-readable message.
"""

from __future__ import annotations

OK = "ok"

# The input could not be opened or read (missing file, permission, unreachable URI).
UNREADABLE = "unreadable"
# The bytes are not a media container FFmpeg understands (zero-byte, random bytes, bad header).
INVALID_CONTAINER = "invalid_container"
# A playlist or list of other files or URLs (HLS .m3u8, ffconcat, SDP, DASH): FFmpeg would open
# what it names, so it is refused (see fv2es.media.guard).
UNSUPPORTED_CONTAINER = "unsupported_container"
# The container opened but decoding failed part way (corrupt stream, or nothing decoded before a cut).
DECODE_ERROR = "decode_error"
# Neither a usable video nor a usable audio stream.
NO_STREAMS = "no_streams"
# The declared frame size is beyond what the config allows us to decode.
TOO_LARGE = "too_large"
# The decoder process died (segfault, out of memory) or exceeded its time limit.
CRASHED = "decoder_crashed"
TIMEOUT = "timeout"
# A requested segment lies outside the media or is empty.
BAD_SEGMENT = "bad_segment"
# A required sidecar (transcript) file is missing, unparsable, or over the size or cue limits.
BAD_SIDECAR = "bad_sidecar"

FAILURE_KINDS = (
    UNREADABLE,
    INVALID_CONTAINER,
    UNSUPPORTED_CONTAINER,
    DECODE_ERROR,
    NO_STREAMS,
    TOO_LARGE,
    CRASHED,
    TIMEOUT,
    BAD_SEGMENT,
    BAD_SIDECAR,
)


class MediaError(Exception):
    """An input problem with a failure ``kind`` (one of :data:`FAILURE_KINDS`)."""

    def __init__(self, kind: str, message: str):
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}")
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
