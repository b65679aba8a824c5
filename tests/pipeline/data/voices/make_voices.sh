#!/usr/bin/env bash
# Makes the voices the face-track and speaker tests read (committed: the tests need neither espeak-ng
# nor sox). Three espeak-ng voices (a low male, a female, a high male with a British accent), two
# short sentences each, spoken at 160 words per minute:
#   v<voice>_<sentence>.wav  16 kHz mono 16-bit, espeak-ng's leading/trailing silence trimmed
# The tests lay them end to end with pauses between (people taking turns) and animate each
# speaker's mouth with the envelope of their own voice. Needs espeak-ng and sox (Debian).
# Usage: tests/pipeline/data/voices/make_voices.sh   (writes next to itself)
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

VOICES=("en-us+m3" "en-us+f3" "en-gb+m7")
S0=("i think we should leave before the rain starts" "that sounds like a very good plan to me")
S1=("have you seen the new bridge across the river" "we could walk there after lunch today")
S2=("my brother bought a small red boat last summer" "nobody believed the story he told us")

for v in 0 1 2; do
    for s in 0 1; do
        case $v in 0) text=${S0[$s]} ;; 1) text=${S1[$s]} ;; 2) text=${S2[$s]} ;; esac
        espeak-ng -v "${VOICES[$v]}" -s 160 -w "$tmp/raw.wav" "$text"
        sox "$tmp/raw.wav" -r 16000 -c 1 -b 16 "v${v}_${s}.wav" \
            silence 1 0.01 0.5% reverse silence 1 0.01 0.5% reverse
    done
done
