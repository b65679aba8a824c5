"""The asr config section: defaults and refused values, each naming asr.<key>."""

from __future__ import annotations

import pytest

from fv2es.asr import AsrConfig
from fv2es.errors import ConfigError


def test_defaults():
    c = AsrConfig()
    assert (c.mode, c.model, c.language, c.compute_type, c.beam_size, c.vad, c.min_silence_ms, c.cpu_threads) == (
        "auto", "", "", "auto", 5, True, 500, 1)


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "sometimes"}, "asr.mode: 'sometimes' is not one of auto, always, never"),
    ({"compute_type": "int4"}, "asr.compute_type: 'int4' is not one of"),
    ({"beam_size": 0}, "asr.beam_size must be >= 1"),
    ({"cpu_threads": -1}, "asr.cpu_threads must be >= 0"),
    ({"min_silence_ms": -5}, "asr.min_silence_ms"),
    ({"vad_threshold": 1.5}, r"asr.vad_threshold must be in \[0, 1\]"),
    ({"no_speech_threshold": -0.1}, "asr.no_speech_threshold"),
    ({"min_confidence": 2.0}, "asr.min_confidence"),
    ({"log_prob_threshold": 0.5}, "asr.log_prob_threshold"),
    ({"language": "english"}, "asr.language: 'english' is not a language code"),
])
def test_bad_values_name_their_key(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AsrConfig(**kwargs)


def test_the_config_loader_builds_the_section():
    from fv2es.config import from_dict

    c = from_dict(AsrConfig, {"mode": "always", "beam_size": 1, "language": "en"}, "asr")
    assert (c.mode, c.beam_size, c.language) == ("always", 1, "en")
    with pytest.raises(ConfigError, match="asr.mode: 'x' is not one of"):
        from_dict(AsrConfig, {"mode": "x"}, "asr")
    with pytest.raises(ConfigError, match="unknown config key 'asr.beam'"):
        from_dict(AsrConfig, {"beam": 2}, "asr")
