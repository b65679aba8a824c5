"""Emotion label sets of the supported datasets, in the seed's logit order."""

IEMOCAP_EMOTIONS = ("ang", "exc", "fru", "hap", "neu", "sad")
MOSEI_EMOTIONS = ("anger", "disgust", "fear", "happy", "sad", "surprise")

# What each label means, for people (the report's legends); a name not here is shown as it is.
# (CMU-MOSEI's names are words already.)
EMOTION_NAMES = {"ang": "angry", "exc": "excited", "fru": "frustrated", "hap": "happy", "neu": "neutral", "sad": "sad"}
