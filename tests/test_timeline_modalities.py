"""The timelines say which modality drove each segment's top emotion (fv2es.timeline)."""

import re

from fv2es.emotions import prob_column
from fv2es.timeline import driving_modality, segment_table, timeline

EMOTIONS = ["happy", "sad"]


def segment(start, end, fused, text=None, face=None, voice=None, **extra):
    row = {"start": start, "end": end, "status": "ok", "error": "", "text": "", **extra}
    for e, p in zip(EMOTIONS, fused):
        row[prob_column(e)] = p
    for name, probs in (("text", text), ("face", face), ("voice", voice)):
        for e, p in zip(EMOTIONS, probs or [None] * len(EMOTIONS)):
            row[prob_column(e, name)] = p
    row["top_emotion"] = EMOTIONS[max(range(len(fused)), key=fused.__getitem__)]
    return row


def test_the_modality_with_the_highest_own_probability_of_the_top_emotion_drives_it():
    s = segment(0, 1, [0.7, 0.3], text=[0.45, 0.55], face=[0.95, 0.05])
    assert driving_modality(s, "happy") == ("face", {"text": 0.45, "face": 0.95})
    assert driving_modality(segment(0, 1, [0.6, 0.4], text=[0.6, 0.4], face=[float("nan")] * 2), "happy")[0] == "text"
    assert driving_modality(segment(0, 1, [0.6, 0.4]), "happy") == (None, {})


def test_the_timeline_has_a_driven_by_track_only_when_the_rows_say():
    rows = [segment(0, 1, [0.7, 0.3], text=[0.4, 0.6], face=[0.9, 0.1]),
            segment(1, 2, [0.2, 0.8], text=[0.2, 0.8], voice=[0.3, 0.5])]
    html = timeline(rows, EMOTIONS, 2.0)
    assert "driven by</div>" in html
    assert re.findall(r'data-modality="(\w+)"', html) == ["face", "text"]
    assert "happy driven by face (happy alone: text 0.40, face 0.90)" in html
    assert "driven by</div>" not in timeline([segment(0, 1, [0.7, 0.3])], EMOTIONS, 1.0)
    table = segment_table(rows, EMOTIONS)
    assert "<th>driven by</th>" in table and "<td>face</td>" in table and "<td>text</td>" in table
