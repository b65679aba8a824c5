"""Emotion label sets of the supported datasets, in the seed's logit order."""

IEMOCAP_EMOTIONS = ("ang", "exc", "fru", "hap", "neu", "sad")
MOSEI_EMOTIONS = ("anger", "disgust", "fear", "happy", "sad", "surprise")
