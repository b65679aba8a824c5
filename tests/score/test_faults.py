"""Real faults (issue 14, items 5, 8, 10): a store outage while reading inputs and while writing
the output, a rerun with another model, a manifest giving each row its own audio."""

import dataclasses
import json
import logging
import socket

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto.server import ThreadedMotoServer

from fv2es.models import load_checkpoint, read_checkpoint_info, save_checkpoint
from fv2es.score.job import ScoreRequest, run_score, scoring_config
from fv2es.score.output import OutputMismatch, OutputWriteError, ScoreOutput


class Store:
    """A private moto S3 server on a fixed port that can go down and come back with its data
    (moto keeps objects in this process, not in the server)."""

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.options = {"key": "testing", "secret": "testing", "skip_instance_cache": True,
                        "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"}}
        self.server = None

    def up(self):
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def down(self):
        self.server.stop()


@pytest.fixture
def store():
    s = Store()
    yield s
    if s.server is not None:
        s.down()


def test_an_output_that_keeps_failing_ends_in_one_line_keeping_what_was_committed(store):
    client = store.up()
    client.create_bucket(Bucket="out")
    quick = {**store.options, "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1}}
    output = ScoreOutput("s3://out/scores", quick, write_retries=2, backoff_s=0.05)
    table = pa.table({"video_uri": ["a"], "speaker_side": [None], "job_id": ["a1"], "status": ["ok"]})
    output.start()
    first = output.write_part(table)
    store.down()
    with pytest.raises(OutputWriteError) as failed:
        output.write_part(table)
    message = str(failed.value)
    assert message.startswith("output s3://out/scores: cannot write segments/part-") and "after 3 tries" in message
    assert message.endswith("run the same command again to resume") and "\n" not in message
    store.up()
    assert output.part_files() == [first]  # the committed part is intact, the failed one never appeared


@pytest.mark.slow
def test_transient_failures_are_retried_on_request_and_audio_per_row_completes(ray_cluster, demo_corpus, checkpoint,
                                                                              tiny_cfg, tmp_path, store, caplog):
    client = store.up()
    client.create_bucket(Bucket="media")
    client.put_object(Bucket="media", Key="clip.mp4", Body=(demo_corpus / "clip_00000.mp4").read_bytes())
    store.down()  # an outage: the remote video cannot be read
    local = str(demo_corpus / "clip_00001.mp4")
    rows = [
        {"id": "remote", "video_uri": "s3://media/clip.mp4", "start": 0.0, "end": 1.0, "text": "hello"},
        # One video, two audio tracks, no speaker_side: two jobs that used to share one key.
        {"id": "track0", "video_uri": local, "start": 0.0, "end": 1.0, "text": "one",
         "audio_uri": local, "audio_channel": 0},
        {"id": "track1", "video_uri": local, "start": 0.0, "end": 1.0, "text": "two",
         "audio_uri": str(demo_corpus / "clip_00002.mp4"), "audio_channel": 0},
    ]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    cfg = dataclasses.replace(tiny_cfg, asr=dataclasses.replace(tiny_cfg.asr, mode="never"))
    no_retries = dataclasses.replace(cfg, resources=dataclasses.replace(cfg.resources, decode_retries=0))
    req = ScoreRequest(str(manifest), str(out), checkpoint, storage_options=store.options)

    counts = run_score(no_retries, req)
    assert (counts["inputs"], counts["videos"], counts["videos_failed"], counts["segments"]) == (2, 2, 1, 3)
    seg = {r["utterance_id"]: r for r in pq.read_table(str(out / "segments")).to_pylist()}
    assert seg["remote"]["status"] == "unreadable" and "EndpointConnectionError" in seg["remote"]["error"]
    assert seg["track0"]["status"] == seg["track1"]["status"] == "ok"
    assert seg["track0"]["job_id"] != seg["track1"]["job_id"]
    meta = pq.read_schema(str(out / "segments" / sorted(p.name for p in (out / "segments").iterdir())[0])).metadata
    recorded = json.loads(meta[b"fv2es.config"])
    assert recorded == scoring_config(cfg, read_checkpoint_info(checkpoint).config)  # the checkpoint's model
    assert "train" not in recorded and "resources" not in recorded

    store.up()  # the store is back: a plain rerun keeps the failure, --retry-failed scores it
    with caplog.at_level(logging.INFO, logger="fv2es"):
        assert run_score(cfg, req)["videos_failed"] == 1
        assert "already complete" in caplog.text
        counts = run_score(cfg, dataclasses.replace(req, retry_failed=True))
    assert "scoring 1 of 3 videos (2 already done)" in caplog.text
    assert (counts["videos"], counts["videos_failed"], counts["segments"], counts["segments_ok"]) == (2, 0, 3, 3)
    segments = pq.read_table(str(out / "segments")).to_pandas()  # the superseded row is gone from disk too
    assert len(segments) == 3 and not segments.duplicated(["job_id", "segment_index"]).any()
    assert (segments.status == "ok").all()
    videos = pq.read_table(str(out / "videos.parquet")).to_pandas()
    assert len(videos) == 2 and videos.video_uri.is_unique and (videos.status == "ok").all()

    # One output, one model: another checkpoint or another scoring config is refused before any work.
    other = tmp_path / "other.safetensors"
    save_checkpoint(str(other), load_checkpoint(checkpoint, inference=False).model, thresholds=[0.3] * 6)
    with pytest.raises(OutputMismatch, match=f"holds scores made with model {counts['model_id']}"):
        run_score(cfg, dataclasses.replace(req, checkpoint_uri=str(other)))
    windows = dataclasses.replace(cfg, segments=dataclasses.replace(cfg.segments, mode="window"))
    with pytest.raises(OutputMismatch, match="holds scores made with scoring config"):
        run_score(windows, req)
    assert json.loads((out / "_SUCCESS").read_text())["segments_ok"] == 3  # untouched
