"""Dataset readers, transcripts and splits: one row per utterance."""
