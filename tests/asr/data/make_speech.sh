#!/usr/bin/env bash
# Makes the speech clips the ASR tests read (committed, so the tests need neither espeak-ng nor sox):
#   one.wav  one long sentence, spoken without a pause (about 9 s: five 2 s windows all hold speech)
#   two.wav  0.5 s silence, sentence A, 1.5 s silence, sentence B, 0.5 s silence
#   speech.json  the texts and where each sentence lies in its clip (the truth the tests compare with)
# All clips: 16 kHz, mono, 16-bit WAV. espeak-ng's own leading/trailing silence is trimmed first so
# the recorded boundaries are where the voice starts and stops. Needs espeak-ng and sox (Debian).
# Usage: tests/asr/data/make_speech.sh   (writes next to itself)
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

LONG="the weather was bright and clear so the children walked down to the river and played in the water until the sun went down behind the green hills far away"
A="please bring me a cup of coffee"
B="the train leaves early in the morning"

say() {  # say TEXT OUT: speak at 150 words per minute, resample to 16 kHz mono, trim the edges
    espeak-ng -v en-us -s 150 -w "$tmp/raw.wav" "$1"
    sox "$tmp/raw.wav" -r 16000 -c 1 -b 16 "$2" \
        silence 1 0.01 0.5% reverse silence 1 0.01 0.5% reverse
}
silence() {  # silence SECONDS OUT
    sox -n -r 16000 -c 1 -b 16 "$2" trim 0 "$1"
}

say "$LONG" one.wav
say "$A" "$tmp/a.wav"
say "$B" "$tmp/b.wav"
silence 0.5 "$tmp/edge.wav"
silence 1.5 "$tmp/gap.wav"
sox "$tmp/edge.wav" "$tmp/a.wav" "$tmp/gap.wav" "$tmp/b.wav" "$tmp/edge.wav" two.wav

one=$(soxi -D one.wav)
a=$(soxi -D "$tmp/a.wav")
b=$(soxi -D "$tmp/b.wav")
python3 - "$one" "$a" "$b" "$LONG" "$A" "$B" > speech.json <<'PY'
import json
import sys

one, a, b = (float(x) for x in sys.argv[1:4])
long_text, a_text, b_text = sys.argv[4:7]
b_start = 0.5 + a + 1.5
print(json.dumps({
    "one.wav": {"sentences": [{"text": long_text, "start": 0.0, "end": round(one, 4)}]},
    "two.wav": {"sentences": [
        {"text": a_text, "start": 0.5, "end": round(0.5 + a, 4)},
        {"text": b_text, "start": round(b_start, 4), "end": round(b_start + b, 4)},
    ]},
}, indent=2))
PY
