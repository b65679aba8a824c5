"""Media front end: decoding, frame sampling, faces, spectrograms."""
