import fsspec
import pytest

from fv2es.data.transcripts import (
    Segment,
    decode_text,
    find_sidecar,
    load_sidecar_transcript,
    parse_iemocap_transcription,
    parse_mosei_transcript,
    parse_srt,
    parse_vtt,
    read_sidecar,
    text_for_span,
)
from fv2es.failures import BAD_SIDECAR, MediaError
from tests.data.conftest import IEMOCAP_TEXT

SRT = (
    "\ufeff1\r\n"
    "00:00:01,000 --> 00:00:02,500\r\n"
    "<i>Hello</i> there,\r\n"
    "General &amp; friends.\r\n"
    "\r\n"
    "2\r\n"
    "00:00:03.250 --> 00:00:04,000 X1:100 X2:200\r\n"
    '{\\an8}<font color="red">Second</font>   cue\r\n'
    "\r\n"
    "\r\n"
    "01:02:03,004 --> 01:02:05,000\r\n"
    "No number, a < b\r\n"
)


def test_srt_cues_with_bom_crlf_tags_and_multiline_text():
    assert parse_srt(SRT) == [
        Segment(1.0, 2.5, "Hello there, General & friends."),
        Segment(3.25, 4.0, "Second cue"),
        Segment(3723.004, 3725.0, "No number, a < b"),
    ]


def test_srt_blank_line_inside_a_cue_continues_it():
    content = "1\n00:00:01,000 --> 00:00:02,000\nfirst part\n\nsecond part\n\n2\n00:00:03,000 --> 00:00:04,000\nnext\n"
    assert parse_srt(content) == [Segment(1.0, 2.0, "first part second part"), Segment(3.0, 4.0, "next")]


def test_srt_drops_cues_with_only_markup_and_empty_files_have_no_cues():
    assert parse_srt("1\n00:00:01,000 --> 00:00:02,000\n<i></i>\n") == []
    assert parse_srt("") == [] and parse_srt("\r\n \r\n") == []


@pytest.mark.parametrize(
    "content, message",
    [
        ("just some words\nwithout timings\n", "line 1: expected a 'start --> end'"),
        ("1\n00:00:01,000 --> soon\nhi\n", "line 2: bad timing line"),
        ("1\n00:00:05,000 --> 00:00:01,000\nhi\n", "ends .* before it starts"),
        ("1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\nstray\n00:00:03,000 --> 00:00:04,000\nx\n", "line 5"),
    ],
)
def test_srt_unparsable(content, message):
    with pytest.raises(ValueError, match=message):
        parse_srt(content)


VTT = """\ufeffWEBVTT - with a title
Kind: captions
Language: en

NOTE this is a comment
that spans two lines

STYLE
::cue { color: yellow }

REGION
id:fred width:40%

intro
00:01.000 --> 00:02.500 align:start position:10%
<v Roger Bingham>We are in New York City</v>

00:00:03.000 --> 00:00:05.000
<c.yellow>Multi</c>
<00:00:04.000>line &lt;cue&gt;

NOTE trailing note

1:00:00.000 --> 1:00:01.5
late
"""


def test_vtt_cues_skipping_header_note_style_region_and_settings():
    assert parse_vtt(VTT) == [
        Segment(1.0, 2.5, "We are in New York City"),
        Segment(3.0, 5.0, "Multi line <cue>"),
        Segment(3600.0, 3601.5, "late"),
    ]
    assert parse_vtt("WEBVTT\r\n\r\n00:01.000 --> 00:02.000\r\nhi\r\n") == [Segment(1.0, 2.0, "hi")]
    assert parse_vtt("WEBVTT\n") == []


@pytest.mark.parametrize(
    "content, message",
    [
        ("00:01.000 --> 00:02.000\nhi\n", "WEBVTT"),
        ("WEBVTTX\n\n00:01.000 --> 00:02.000\nhi\n", "WEBVTT"),
        ("WEBVTT\n\njust text\nmore text\n", "line 3"),
        ("WEBVTT\n\n00:01.000 --> 00:99.000\nhi\n", "bad timestamp"),
    ],
)
def test_vtt_unparsable(content, message):
    with pytest.raises(ValueError, match=message):
        parse_vtt(content)


@pytest.fixture
def memfs():
    fs = fsspec.filesystem("memory")
    yield fs
    if fs.exists("/sidecars"):
        fs.rm("/sidecars", recursive=True)


def test_find_sidecar_prefers_srt_then_vtt_then_txt(memfs):
    video = "memory://sidecars/clip.v1.mp4"
    assert find_sidecar(video) is None
    memfs.pipe("/sidecars/clip.v1.txt", b"plain")
    assert find_sidecar(video) == "memory://sidecars/clip.v1.txt"
    memfs.pipe("/sidecars/clip.v1.vtt", b"WEBVTT\n")
    assert find_sidecar(video) == "memory://sidecars/clip.v1.vtt"
    memfs.pipe("/sidecars/clip.v1.srt", b"")
    assert find_sidecar(video, memfs) == "memory://sidecars/clip.v1.srt"


def test_sidecar_transcripts_local(tmp_path):
    video = tmp_path / "talk.mp4"
    assert load_sidecar_transcript(str(video)) is None  # no sidecar: the text modality is absent

    (tmp_path / "talk.txt").write_text("  Hello\r\nworld  \n")
    assert load_sidecar_transcript(str(video)) == [Segment(None, None, "Hello world")]
    (tmp_path / "talk.srt").write_bytes(SRT.encode("utf-16"))  # Windows tools write UTF-16
    assert [s.text for s in load_sidecar_transcript(str(video))][:1] == ["Hello there, General & friends."]

    (tmp_path / "empty.txt").write_text("\n")
    assert read_sidecar(str(tmp_path / "empty.txt")) == []


def test_unparsable_or_unreadable_sidecar_is_a_bad_sidecar_failure(tmp_path):
    (tmp_path / "broken.srt").write_text("not subtitles at all\n")
    with pytest.raises(MediaError) as info:
        load_sidecar_transcript(str(tmp_path / "broken.mp4"))
    assert info.value.kind == BAD_SIDECAR and "broken.srt" in info.value.message

    with pytest.raises(MediaError, match=r"no transcript \(.*/absent\{\.srt,\.vtt,\.txt\}\)") as info:
        load_sidecar_transcript(str(tmp_path / "absent.mp4"), required=True)
    assert info.value.kind == BAD_SIDECAR

    (tmp_path / "broken2.vtt").write_text("00:01.000 --> 00:02.000\nhi\n")
    with pytest.raises(MediaError, match="WEBVTT"):
        read_sidecar(str(tmp_path / "broken2.vtt"))
    with pytest.raises(MediaError, match="cannot read") as info:
        read_sidecar(str(tmp_path / "gone.srt"))
    assert info.value.kind == BAD_SIDECAR


def test_decode_text_handles_bom_utf16_and_cp1252():
    assert decode_text("\ufeffcafé".encode()) == "café"
    assert decode_text("café".encode("utf-16")) == "café"
    assert decode_text("café".encode("cp1252")) == "café"


def test_text_for_span_gives_a_cue_to_every_span_it_overlaps():
    cues = [
        Segment(0.0, 2.0, "a"),
        Segment(1.5, 4.5, "b"),
        Segment(5.0, 6.0, "c"),
        Segment(None, None, "all"),
    ]
    assert text_for_span(cues, 0.0, 3.0) == "a b all"  # b straddles 3.0: it is in [0, 3) ...
    assert text_for_span(cues, 3.0, 6.0) == "b c all"  # ... and in [3, 6)
    assert text_for_span(cues) == "a b c all"
    assert text_for_span(cues[:3], start=4.0) == "b c"
    assert text_for_span(cues[:3], 2.0, 5.0) == "b"  # a ends and c starts on the edges: touching is not overlapping
    assert text_for_span(cues[:3], 4.5, 5.0) == ""
    assert text_for_span([Segment(3.0, 3.0, "instant")], 3.0, 4.0) == "instant"
    assert text_for_span([Segment(3.0, 3.0, "instant")], 2.0, 3.0) == ""


def test_iemocap_transcription_from_the_real_file():
    turns = parse_iemocap_transcription(IEMOCAP_TEXT.read_bytes().decode())
    assert len(turns) == 30
    assert turns["Ses01F_impro01_F000"] == Segment(6.2901, 8.2357, "Excuse me.")
    start, end, text = turns["Ses01F_impro01_M013"]
    assert (start, end) == (101.84, 107.87)
    assert text.endswith("I'll be right back.")
    assert not any("\r" in s.text for s in turns.values())


def test_iemocap_transcription_skips_lines_that_are_not_turns():
    content = (
        "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\r\n"
        "M: breathing\r\n"
        "\r\n"
        "F: [LAUGHTER]\r\n"
        "Ses01F_impro01_MXX0 [010.0000-011.0000]: [GARBAGE]\r\n"
    )
    assert parse_iemocap_transcription(content) == {
        "Ses01F_impro01_F000": Segment(6.2901, 8.2357, "Excuse me."),
        "Ses01F_impro01_MXX0": Segment(10.0, 11.0, "[GARBAGE]"),
    }


def test_mosei_transcript_lines():
    content = (
        "--qXJuDtHPw___5___23.199___30.325___I see that a writer is somebody\n"
        "_7HVhnSYX1Y___0___-0.457596371882___1.77959183673___snake_case and ___ triple\r\n"
        "abc____12___1___2.5___id ends in an underscore\n"
        "not a transcript line\n"
        "\n"
    )
    assert parse_mosei_transcript(content) == {
        ("--qXJuDtHPw", "5"): Segment(23.199, 30.325, "I see that a writer is somebody"),
        ("_7HVhnSYX1Y", "0"): Segment(-0.457596371882, 1.77959183673, "snake_case and ___ triple"),
        ("abc_", "12"): Segment(1.0, 2.5, "id ends in an underscore"),
    }
