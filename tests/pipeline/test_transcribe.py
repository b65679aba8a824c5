"""The transcription stage on real speech (espeak-ng WAVs under a face), without Ray."""

import json

import numpy as np
import pyarrow as pa
import pytest

from fv2es.asr.config import AsrConfig
from fv2es.config import ResourcesConfig, ScoreConfig, SegmentsConfig
from fv2es.media.decode import DecodeConfig
from fv2es.media.encode import write_clip
from fv2es.pipeline.numbering import SegmentNumbering, number_all
from fv2es.pipeline.packing import unpack_frame_times
from fv2es.pipeline.plan import list_jobs
from fv2es.pipeline.stages import DECODED_SCHEMA, Decode, Transcribe

BROKEN_MODEL = AsrConfig(model="/nonexistent/whisper")  # loading it would fail: proves it is never loaded


@pytest.fixture(scope="module")
def media(tmp_path_factory, speech):
    root = tmp_path_factory.mktemp("speech")
    speech.video(root / "two.mp4", speech.wav("two.wav"))
    speech.video(root / "one.mp4", speech.wav("one.wav"))
    speech.video(root / "quiet.mp4", speech.noise(3.0))
    write_clip(str(root / "mute.mp4"), speech.face_frames(4.0), 10)  # no audio stream at all
    return root


def job(root, name):
    (j,) = list_jobs(str(root / name), ScoreConfig())
    return j


def decoded(root, name, asr_mode="auto", segments=None, chunk_s=60.0):
    stage = Decode(DecodeConfig(max_side=320), segments or SegmentsConfig(), ResourcesConfig(chunk_s=chunk_s),
                   asr_mode=asr_mode)
    return list(stage(pa.Table.from_pylist([job(root, name)])))


def transcribe(tables, asr=None, segments=None):
    stage = Transcribe(asr or AsrConfig(), segments or SegmentsConfig(), 16000)
    return [stage(t) for t in tables]


def test_decode_leaves_an_uncaptioned_video_to_be_cut_at_its_speech(media):
    tables = decoded(media, "two.mp4", chunk_s=4.0)
    rows = pa.concat_tables(tables).to_pylist()
    assert [(r["cuts"], r["chunk_index"], r["chunk_count"]) for r in rows] == [("speech", 0, 2), ("speech", 1, 2)]
    assert [x for r in rows for x in (r["start"], r["end"])] == pytest.approx([0.0, 4.0, 4.0, 6.218], abs=0.01)
    assert all(r["waveform_samples"] > 0 and r["frames_sampled"] > 0 for r in rows)
    never = pa.concat_tables(decoded(media, "two.mp4", asr_mode="never")).to_pylist()
    assert [(r["cuts"], r["chunk_index"], r["chunk_count"], r["text_source"]) for r in never] == [("", 0, 1, "none")]


def test_rows_with_text_pass_through_without_loading_the_model(media):
    (table,) = decoded(media, "one.mp4", asr_mode="never")
    captioned = table.set_column(table.schema.get_field_index("text_source"), "text_source", pa.array(["caption"]))
    (out,) = transcribe([captioned], BROKEN_MODEL)
    assert out.to_pylist() == captioned.to_pylist()


def test_adjacent_windows_without_audio_are_cut_from_one_stretch(media):
    windows = SegmentsConfig(mode="window", window_s=1.0)
    (chunk,) = decoded(media, "mute.mp4", segments=windows)
    (row,) = chunk.to_pylist()
    cuts = json.loads(row["cuts"])
    assert [c[:2] for c in cuts] == [[float(k), float(k + 1)] for k in range(4)]
    assert (row["chunk_row"], row["chunk_rows"]) == (0, 4)
    assert row["has_audio"] is False and row["frames_sampled"] == 8
    (out,) = transcribe([chunk], BROKEN_MODEL, windows)  # no audio: nothing to transcribe, only cut
    rows = number_all(out).to_pylist()
    assert [(r["segment_index"], r["segment_count"], r["start"], r["end"]) for r in rows] == [
        (k, 4, float(k), float(k + 1)) for k in range(4)]
    assert [r["frames_sampled"] for r in rows] == [2, 2, 2, 2]
    for r in rows:
        times = unpack_frame_times(r)
        assert ((times >= r["start"]) & (times < r["end"])).all()
        assert (r["text"], r["text_source"], r["cuts"]) == ("", "none", "")


def test_numbering_waits_for_every_chunk_then_counts_over_the_video():
    def rows(chunk, n, job="v", chunks=3):
        return [{"video_uri": job, "job_id": job, "chunk_index": chunk, "chunk_count": chunks, "chunk_row": j,
                 "chunk_rows": n, "start": chunk * 10.0 + j} for j in range(n)]

    plain = rows(0, 1, job="w", chunks=1)
    numbering = SegmentNumbering()
    first = numbering.add(pa.Table.from_pylist(rows(2, 1) + plain + rows(0, 2)[:1]))
    assert [t.to_pylist() for t in first] == [
        [{"video_uri": "w", "job_id": "w", "start": 0.0, "segment_index": 0, "segment_count": 1}]]
    assert numbering.add(pa.Table.from_pylist(rows(0, 2)[1:])) == []
    (done,) = numbering.add(pa.Table.from_pylist(rows(1, 3)[::-1]))  # rows arrive in any order
    assert done.column("start").to_pylist() == [0.0, 1.0, 10.0, 11.0, 12.0, 20.0]
    assert done.column("segment_index").to_pylist() == list(range(6))
    assert set(done.column("segment_count").to_pylist()) == {6} and numbering.incomplete() == []


@pytest.mark.slow
def test_two_sentences_become_two_segments_with_their_words(media, speech):
    (out,) = transcribe(decoded(media, "two.mp4"))
    assert out.schema == DECODED_SCHEMA
    rows = out.to_pylist()
    truth = speech.sentences("two.wav")
    assert len(rows) == 2
    for row, sentence in zip(rows, truth):
        assert abs(row["start"] - sentence["start"]) < 0.5 and abs(row["end"] - sentence["end"]) < 0.5
        assert row["text_source"] == "asr" and row["language"] == "en" and 0.5 < row["asr_confidence"] <= 1.0
        assert speech.wer(sentence["text"], row["text"]) <= 0.35, row["text"]
        assert row["waveform_samples"] == pytest.approx((row["end"] - row["start"]) * 16000, abs=2)
        times = unpack_frame_times(row)
        assert len(times) == row["frames_sampled"] >= 3 and ((times >= row["start"]) & (times < row["end"])).all()
        assert (row["chunk_rows"], row["chunk_index"], row["chunk_count"]) == (2, 0, 1)


@pytest.mark.slow
def test_every_window_overlapping_a_sentence_gets_its_words(media):
    windows = SegmentsConfig(mode="window", window_s=2.0)
    (out,) = transcribe(decoded(media, "one.mp4", segments=windows), segments=windows)
    rows = out.to_pylist()
    assert len(rows) == 5  # 8.84 s of continuous speech
    assert all(r["text_source"] == "asr" and r["text"] for r in rows), [r["text"] for r in rows]
    heard = " ".join(r["text"] for r in rows)
    assert "weather" in heard.lower() and "river" in heard.lower()


@pytest.mark.slow
def test_faint_noise_gives_no_words(media):
    (out,) = transcribe(decoded(media, "quiet.mp4"))
    (row,) = out.to_pylist()
    assert (row["text"], row["text_source"], row["language"], row["status"]) == ("", "none", None, "ok")
    assert (row["start"], row["end"]) == pytest.approx((0.0, 3.0), abs=0.05)  # scored whole, face and voice


def test_frames_of_a_cut_match_a_direct_decode(media):
    """Slicing a decoded stretch gives the frames a decode of the piece itself gives."""
    windows = SegmentsConfig(mode="window", window_s=1.0)
    (chunk,) = decoded(media, "mute.mp4", segments=windows)
    (cut,) = transcribe([chunk], BROKEN_MODEL, windows)
    direct = pa.concat_tables(decoded(media, "mute.mp4", asr_mode="never", segments=windows)).to_pylist()
    for a, b in zip(cut.to_pylist(), direct):
        assert np.array_equal(unpack_frame_times(a), unpack_frame_times(b))
        assert a["frames"] == b["frames"]


def test_a_broken_audio_stream_costs_only_the_audio_and_the_words(media, tmp_path):
    (tmp_path / "broken.wav").write_bytes(b"RIFF but not really a wave file")
    broken = {**job(media, "two.mp4"), "audio_uri": str(tmp_path / "broken.wav"), "audio_channel": 0}
    stage = Decode(DecodeConfig(max_side=320), SegmentsConfig(), ResourcesConfig(), asr_mode="auto")
    (out,) = transcribe(list(stage(pa.Table.from_pylist([broken]))), BROKEN_MODEL)
    (row,) = out.to_pylist()  # no audio to hear: the stretch is scored whole, on its face
    assert (row["status"], row["has_audio"], row["waveform_samples"]) == ("ok", False, 0)
    assert row["error"].startswith("warning: audio") and row["frames_sampled"] > 0
    assert (row["text"], row["text_source"], row["start"]) == ("", "none", 0.0)
    assert row["end"] == pytest.approx(6.2, abs=0.05)
