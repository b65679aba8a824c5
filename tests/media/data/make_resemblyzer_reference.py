"""Makes resemblyzer_reference.npz, the voice encoder's reference embeddings (committed).

Run once in a scratch environment with the real ``resemblyzer==0.1.4`` and its dependencies
(librosa, numba, webrtcvad: none of them fv2es's), never in fv2es's own::

    python -m venv /tmp/rzvenv && /tmp/rzvenv/bin/pip install librosa webrtcvad-wheels scipy
    /tmp/rzvenv/bin/pip install --no-deps resemblyzer==0.1.4   # webrtcvad itself does not build here
    /tmp/rzvenv/bin/python tests/media/data/make_resemblyzer_reference.py

(torch may come from anywhere: the committed file was made with torch 2.11.0 made visible to the
scratch environment by a ``.pth`` file; librosa 0.11.0.)

For each committed test voice (tests/pipeline/data/voices/v*_*.wav, sorted), Resemblyzer's own
``VoiceEncoder.embed_utterance`` of the raw waveform (no ``preprocess_wav``: its volume
normalisation and webrtcvad trimming are not part of the encoder): ``utterance`` (6, 256), and
every partial embedding, ``partials`` (P, 256), with ``partial_counts`` (6,). Also the library
versions it ran with, ``versions``.
"""

from importlib.metadata import version
from pathlib import Path

import librosa
import numpy as np
import torch
from resemblyzer import VoiceEncoder

HERE = Path(__file__).resolve().parent
VOICES = HERE.parents[1] / "pipeline" / "data" / "voices"

encoder = VoiceEncoder("cpu", verbose=False)
utterance, partials, counts = [], [], []
for path in sorted(VOICES.glob("v*_*.wav")):
    wav, sr = librosa.load(str(path), sr=None)
    assert sr == 16000, sr
    embed, parts, _ = encoder.embed_utterance(wav, return_partials=True)
    utterance.append(embed)
    partials.append(parts)
    counts.append(len(parts))
versions = f"resemblyzer {version('resemblyzer')} librosa {librosa.__version__} torch {torch.__version__}"
np.savez_compressed(HERE / "resemblyzer_reference.npz", utterance=np.stack(utterance).astype(np.float32),
                    partials=np.concatenate(partials).astype(np.float32), partial_counts=np.array(counts),
                    versions=np.array(versions))
print(len(counts), "voices,", sum(counts), "partials;", versions)
