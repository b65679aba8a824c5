"""fv2es: end-to-end multimodal video emotion recognition (FV2ES) as distributed Ray jobs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fv2es")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
