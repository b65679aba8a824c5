"""What a hostile input file cannot make the decoder do: open anything else, or block forever.

A media file is data, but some FFmpeg demuxers read it as a list of other things to open: an
HLS playlist (``.m3u8``) names segment URLs, an ffconcat list names files, an SDP description
names network streams, ``image2`` expands a file-name pattern. Given such a file as a
``video_uri`` or ``audio_uri``, FFmpeg would fetch URLs or read local files that no manifest
named (server-side request forgery). fv2es decodes only the bytes fsspec handed it:

* the common lists are recognised by their first bytes and refused as ``unsupported_container``
  before FFmpeg sees them;
* FFmpeg's ``format_whitelist`` holds every demuxer except those in :data:`REFUSED_DEMUXERS`, so
  a refused demuxer is never picked, even for a file the first-bytes check missed;
* ``protocol_whitelist`` names no protocol: our bytes come through the file object, which needs
  none, so a nested open by any demuxer (a segment, a key, a referenced file) fails;
* a local path must name a regular file: a FIFO or a device named ``.mp4`` would block the open
  or never end, holding a decoder for the whole timeout.
"""

from __future__ import annotations

import functools
import os
import stat

import av

# Demuxers that open other files, URLs or devices, or run scripts. Most are absent from a given
# FFmpeg build (dash needs libxml2, avisynth a DLL); listing them costs nothing.
REFUSED_DEMUXERS = frozenset({
    "hls", "dash", "concat", "imf", "sdp", "rtp", "rtsp", "sap", "image2", "lavfi", "dvdvideo",
    "avisynth", "vapoursynth", "libcdio", "libdc1394", "iec61883", "decklink", "dshow", "gdigrab",
    "vfwcap", "avfoundation", "android_camera", "alsa", "oss", "pulse", "jack", "openal", "sndio",
    "fbdev", "kmsgrab", "x11grab", "video4linux2", "v4l2",
})

# FFmpeg has no protocol of this name: a whitelist of it allows no protocol at all.
NO_PROTOCOL = "none"

# First bytes of the lists FFmpeg would follow, and what to call them in a message.
_SIGNATURES = (
    (b"#EXTM3U", "an HLS / M3U playlist"),
    (b"ffconcat version", "an FFmpeg concat list"),
    (b"v=0", "an SDP session description"),
)
_XML_MARKERS = ((b"<MPD", "a DASH manifest"), (b"<CompositionPlaylist", "an IMF composition playlist"))


@functools.cache
def format_whitelist() -> str:
    """Every demuxer of this FFmpeg build except the refused ones, as FFmpeg's comma list."""
    names = set()
    for name in av.formats_available:
        try:
            names.add(av.ContainerFormat(name, "r").name)
        except ValueError:  # a muxer only
            continue
    # A demuxer's name may list aliases ("video4linux2,v4l2"); FFmpeg matches any of them.
    allowed = sorted(n for n in names if not REFUSED_DEMUXERS.intersection(n.split(",")))
    return ",".join(allowed)


def container_options() -> dict[str, str]:
    """``av.open`` container options that keep FFmpeg to the bytes of the file object."""
    return {"protocol_whitelist": NO_PROTOCOL, "format_whitelist": format_whitelist()}


def refused_kind(head: bytes) -> str | None:
    """What the file is, when its first bytes show a list FFmpeg would follow; else None."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")  # a UTF-8 BOM and blank lines may precede the tag
    for prefix, what in _SIGNATURES:
        if text.startswith(prefix):
            return what
    if text.startswith(b"<"):
        for marker, what in _XML_MARKERS:
            if marker in head:
                return what
    return None


class NotRegularFile(OSError):
    """A local path that names a FIFO, device, socket or directory rather than a file."""


def open_local(path: str):
    """Open a local file for reading, refusing anything but a regular file without blocking.

    ``O_NONBLOCK`` makes opening a FIFO return at once (a plain open waits for a writer); the
    type is then checked on the open descriptor, so a path swapped between check and open
    cannot slip through.

    Raises:
        NotRegularFile: ``path`` is not a regular file.
        OSError: it cannot be opened (missing, permission).
    """
    # Opened by name (not os.fdopen), so the file object keeps it: FFmpeg uses the name as a
    # probing hint (its extension), as it did when fsspec opened local files.
    f = open(path, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NONBLOCK))  # noqa: SIM115 -- returned open
    try:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # (open() itself refuses a directory)
            raise NotRegularFile("not a regular file (a FIFO, device or socket)")
        os.set_blocking(f.fileno(), True)
        return f
    except BaseException:
        f.close()
        raise


def with_io_timeouts(protocol: str, options: dict, seconds: float) -> dict:
    """``options`` plus connect and read timeouts for the remote filesystems that take them.

    A stalled endpoint then fails the read within ``seconds`` (times the client's retries)
    instead of holding the decoder until the whole decode timeout. Timeouts the user set win.
    """
    options = dict(options)
    if protocol in ("s3", "s3a"):
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("connect_timeout", seconds)
        config.setdefault("read_timeout", seconds)
        options["config_kwargs"] = config
    elif protocol in ("http", "https"):
        client = dict(options.get("client_kwargs") or {})
        if "timeout" not in client:
            import aiohttp

            client["timeout"] = aiohttp.ClientTimeout(sock_connect=seconds, sock_read=seconds)
        options["client_kwargs"] = client
    return options
