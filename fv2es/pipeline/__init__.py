"""The media pipeline shared by the scoring and preprocessing jobs: what to process (``plan``), the
per-batch stages (``stages``: decode, transcribe, spectrogram, faces), and their composition into a
Ray Dataset (``dataset``)."""
