"""The scoring job: videos in, Parquet emotion tables out."""
