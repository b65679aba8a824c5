import json
import os
import re
import tempfile
import urllib.request
import wave
from pathlib import Path

import numpy as np
import pytest

# Tests are offline by construction; make any accidental hub access fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_cluster():
    """One shared 2-CPU local Ray for the whole session (the size of the machines CI runs on):
    a Ray start costs seconds of the 2 cores, and the jobs run in-process (`fv2es demo`, scoring,
    training) join it instead of starting their own."""
    import ray

    if ray.is_initialized():  # a job run in-process before (without this fixture) left its own
        ray.shutdown()
    # Ray Data reads Parquet footers with a pool of up to 32 actors per read, each a process start
    # (on 2 cores, seconds per training epoch); the tests' shards are a dozen small files. Set before
    # Ray starts, so every worker has it.
    os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def s3_endpoint():
    """A real S3 endpoint (moto's server on 127.0.0.1) with a bucket "data"; yields storage_options."""
    import boto3
    from moto import server as moto_server

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto keeps its buckets in process-wide memory: every module starts from an empty store.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30)
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **credentials).create_bucket(
        Bucket="data"
    )
    yield {
        "key": credentials["aws_access_key_id"],
        "secret": credentials["aws_secret_access_key"],
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        # s3fs caches listings per instance; a fresh one per test sees each test's uploads.
        "skip_instance_cache": True,
    }
    server.stop()


@pytest.fixture(scope="session")
def iemocap_annotations() -> tuple[Path, Path]:
    """The real annotation files of one IEMOCAP dialog (tests/data/fixtures/iemocap): its labels
    (EmoEvaluation) and its transcript."""
    folder = Path(__file__).parent / "data" / "fixtures" / "iemocap"
    return folder / "Ses01F_impro01_label.txt", folder / "Ses01F_impro01_text.txt"


class SpeechMedia:
    """Real speech for the tests of every package: the espeak-ng clips of ``tests/asr/data`` (made by
    its ``make_speech.sh``) with the sentences placed in them, the word error rate, and mp4s of the
    demo corpus's face speaking them."""

    data = Path(__file__).parent / "asr" / "data"
    rate = 16000

    def wav(self, name: str) -> np.ndarray:
        """A committed 16 kHz mono 16-bit clip as float32 in [-1, 1]."""
        with wave.open(str(self.data / name)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (self.rate, 1, 2)
            return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768

    def sentences(self, name: str) -> list[dict]:
        """The sentences of clip ``name``: text, start and end (seconds), as make_speech.sh placed them."""
        return json.loads((self.data / "speech.json").read_text())[name]["sentences"]

    @staticmethod
    def wer(reference: str, hypothesis: str) -> float:
        """Word error rate: (substitutions + deletions + insertions) / reference words (Levenshtein on words)."""
        def words(text):
            return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()

        ref, hyp = words(reference), words(hypothesis)
        row = list(range(len(hyp) + 1))
        for i, r in enumerate(ref, 1):
            prev, row[0] = row[0], i
            for j, h in enumerate(hyp, 1):
                prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
        return row[-1] / max(len(ref), 1)

    def noise(self, seconds: float, level: float = 0.003, seed: int = 0) -> np.ndarray:
        """Faint white noise: a room with nobody speaking."""
        return (np.random.default_rng(seed).standard_normal(round(seconds * self.rate)) * level).astype(np.float32)

    def face_frames(self, seconds: float, fps: int = 10) -> np.ndarray:
        """``seconds`` of the demo corpus's face, uint8 (T, 120, 160, 3)."""
        from fv2es.media.decode import DecodeConfig, decode
        from fv2es.media.democorpus import make_demo_corpus

        with tempfile.TemporaryDirectory() as tmp:
            make_demo_corpus(tmp, videos=1, seed=3, seconds=(seconds, seconds), fps=fps)
            (row,) = decode(str(Path(tmp) / "clip_00000.mp4"), None, DecodeConfig(img_interval_ms=1000 // fps))
        return row.frames

    def video(self, path: Path, audio: np.ndarray, fps: int = 10) -> Path:
        """An mp4 of the demo face speaking ``audio`` (16 kHz mono float32)."""
        from fv2es.media.encode import write_clip

        write_clip(str(path), self.face_frames(len(audio) / self.rate, fps), fps, audio, self.rate)
        return path


@pytest.fixture(scope="session")
def speech() -> SpeechMedia:
    """:class:`SpeechMedia`: real speech, its sentences, the word error rate, speaking-face videos."""
    return SpeechMedia()
