"""Emotion label sets of the supported datasets (in the seed's logit order), the default decision
threshold, and the names of the score tables' probability columns."""

IEMOCAP_EMOTIONS = ("ang", "exc", "fru", "hap", "neu", "sad")
MOSEI_EMOTIONS = ("anger", "disgust", "fear", "happy", "sad", "surprise")

# What each label means, for people (the report's legends); a name not here is shown as it is.
# (CMU-MOSEI's names are words already.)
EMOTION_NAMES = {"ang": "angry", "exc": "excited", "fru": "frustrated", "hap": "happy", "neu": "neutral", "sad": "sad"}

# The one default decision threshold: of an emotion that has no positive rows to tune on, of every
# emotion under ``ce``, and of a checkpoint saved without validated thresholds (fv2es.predict).
DEFAULT_THRESHOLD = 0.5

# The modalities whose own probabilities a score row carries beside the fused ones.
MODALITY_NAMES = {"t": "text", "v": "face", "a": "voice"}


def prob_column(emotion: str, modality: str | None = None) -> str:
    """The score tables' probability column of ``emotion``: ``prob_<emotion>`` for the fused score,
    ``prob_<modality>_<emotion>`` for what one modality (``text``, ``face``, ``voice``) says alone."""
    return f"prob_{emotion}" if modality is None else f"prob_{modality}_{emotion}"


def emotions_of_columns(columns) -> list[str]:
    """The emotions whose fused probability column (``prob_<emotion>``) is among ``columns``, in order."""
    per_modality = tuple(f"prob_{m}_" for m in MODALITY_NAMES.values())
    return [c[len("prob_"):] for c in columns if c.startswith("prob_") and not c.startswith(per_modality)]
