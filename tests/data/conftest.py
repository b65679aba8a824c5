import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
IEMOCAP_LABEL = FIXTURES / "iemocap" / "Ses01F_impro01_label.txt"
IEMOCAP_TEXT = FIXTURES / "iemocap" / "Ses01F_impro01_text.txt"


def build_iemocap(root: Path, *, video: bool = True, wav: bool = True, transcript: bool = True) -> Path:
    """A one-dialog IEMOCAP release layout from the real annotation files, with empty media files."""
    dialog = root / "Session1" / "dialog"
    (dialog / "EmoEvaluation").mkdir(parents=True)
    shutil.copyfile(IEMOCAP_LABEL, dialog / "EmoEvaluation" / "Ses01F_impro01.txt")
    # The release also has per-annotator folders and macOS "._" files here; the reader must skip them.
    (dialog / "EmoEvaluation" / "Categorical").mkdir()
    (dialog / "EmoEvaluation" / "._Ses01F_impro01.txt").write_bytes(b"\x00\x05\x16\x07")
    (dialog / "transcriptions").mkdir()
    if transcript:
        shutil.copyfile(IEMOCAP_TEXT, dialog / "transcriptions" / "Ses01F_impro01.txt")
    (dialog / "avi" / "DivX").mkdir(parents=True)
    if video:
        (dialog / "avi" / "DivX" / "Ses01F_impro01.avi").write_bytes(b"")
    (dialog / "wav").mkdir()
    if wav:
        (dialog / "wav" / "Ses01F_impro01.wav").write_bytes(b"")
    return root


@pytest.fixture
def make_iemocap(tmp_path: Path):
    """``make_iemocap(video=..., wav=..., transcript=...)`` -> root of a fresh one-dialog layout."""

    def make(**parts: bool) -> Path:
        return build_iemocap(tmp_path / "IEMOCAP_full_release", **parts)

    return make
