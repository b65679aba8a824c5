from pathlib import Path

import pytest

from fv2es.config import Config, ConfigError, ModelConfig, config_from_dict, load_config, parse_overrides

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def all_config_files():
    files = sorted(CONFIGS.rglob("*.yaml")) + sorted(CONFIGS.rglob("*.yml"))
    assert files, "configs/ holds no YAML"
    return files


@pytest.mark.parametrize("path", all_config_files(), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_loads_and_starts_with_its_command(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    first = path.read_text().splitlines()[0]
    assert first.startswith("#"), f"{path.name} must begin with a comment giving its launch command"
    assert "fv2es " in path.read_text().split("\n\n")[0] or "Launch" in path.read_text()


def test_paper_config_matches_the_seed_command():
    cfg = load_config(CONFIGS / "paper.yaml")
    assert cfg.model.preset == "fv2es_paper"
    assert cfg.model.modalities == "tav"
    assert (cfg.model.trans_dim, cfg.model.trans_nlayers, cfg.model.trans_nheads) == (64, 4, 4)
    assert cfg.model.text_model == "albert-base-v2" and cfg.model.text_max_len == 100
    assert cfg.model.emotions == ("ang", "exc", "fru", "hap", "neu", "sad")
    assert cfg.train.lr == pytest.approx(4.5e-6) and isinstance(cfg.train.lr, float)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.early_stop) == (30, 2, 6)
    assert cfg.train.text_lr_factor == 10 and cfg.train.loss == "bce"
    assert cfg.decode.img_interval_ms == 500 and cfg.faces.image_size == 48 and cfg.spectrogram.n_mels == 128
    assert cfg.model.audio_depths == (2, 2, 20) and cfg.model.visual_channels[-1] == 512
    assert (cfg.model.audio_patch_kernel, cfg.model.audio_drop_path) == (3, 0.5)
    assert cfg.model == config_from_dict({"model": {"preset": "fv2es_paper"}}).model  # the file is the preset


def test_tiny_config_starts_from_the_tiny_preset():
    cfg = load_config(CONFIGS / "tiny.yaml")
    assert cfg.model.preset == "fv2es_tiny"
    assert cfg.model.text_model == "minilm"
    assert cfg.model.trans_dim < 64


def test_overrides_apply_on_top_of_file():
    cfg = load_config(CONFIGS / "tiny.yaml", ["model.trans_dim=16", "train.lr=1e-4", "model.modalities=av",
                                             "model.audio_depths=[1,1,2]", "train.scheduler=true"])
    assert cfg.model.trans_dim == 16
    assert cfg.train.lr == pytest.approx(1e-4)
    assert cfg.model.modalities == "av"
    assert cfg.model.audio_depths == (1, 1, 2)
    assert cfg.train.scheduler is True
    # untouched values keep the file's
    assert cfg.train.batch_size == load_config(CONFIGS / "tiny.yaml").train.batch_size


def test_preset_gives_the_base_and_yaml_values_win():
    cfg = config_from_dict({"model": {"preset": "fv2es_tiny", "trans_nlayers": 3}})
    assert cfg.model.trans_nlayers == 3
    assert cfg.model.visual_channels == (8, 8, 8, 16, 16, 32)


def test_configs_are_frozen_and_round_trip():
    cfg = load_config(CONFIGS / "tiny.yaml")
    with pytest.raises(AttributeError):
        cfg.model.trans_dim = 3
    assert config_from_dict(cfg.to_dict()) == cfg
    assert cfg.digest() == config_from_dict(cfg.to_dict()).digest()
    assert cfg.digest() != load_config(CONFIGS / "paper.yaml").digest()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.trans_dm=3"], "unknown config key 'model.trans_dm' (did you mean 'trans_dim'?)"),
        (["modle.trans_dim=3"], "unknown config key 'modle' (did you mean 'model'?)"),
        (["train.lr=abc"], "train.lr: expected a number, got 'abc'"),
        (["train.epochs=2.5"], "train.epochs: expected an integer, got 2.5"),
        (["train.epochs=0"], "train.epochs must be > 0"),
        (["train.loss=mse"], "train.loss: 'mse' is not one of bce, ce"),
        (["model.modalities=tx"], "model.modalities: 'tx' must be a non-empty subset"),
        (["model.trans_dim=30", "model.trans_nheads=4"], "must be divisible by model.trans_nheads"),
        (["model.preset=fv2es_huge"], "unknown model 'fv2es_huge'; known: fv2es_paper, fv2es_tiny"),
        (["train.scheduler=maybe"], "train.scheduler: expected true/false, got 'maybe'"),
        (["model.visual_channels=[8,8]"], "model.visual_channels: give 6 widths"),
        (["data.split_ratios=[0.5,0.5,0.5]"], "data.split_ratios"),
        (["trans_dim"], "expected KEY=VALUE"),
        (["faces.select=middle"], "faces: select must be one of"),
        (["decode.max_side=-1"], "decode: img_interval_ms, max_side and sample_rate must be positive"),
        (["spectrogram.n_mels=100"], "spectrogram: n_mels must be a multiple of piece_frames"),
        (["decode.audio_channel=left"], "decode.audio_channel: expected an integer, got 'left'"),
    ],
)
def test_bad_values_are_refused_with_their_name(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "tiny.yaml", overrides)
    assert message in str(err.value)


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    section = tmp_path / "section.yaml"
    section.write_text("model: 3\n")
    with pytest.raises(ConfigError, match="model: expected a mapping"):
        load_config(section)


def test_media_sections_are_the_stages_own_options():
    from fv2es.media.decode import DecodeConfig
    from fv2es.media.faces import FaceConfig

    cfg = load_config(CONFIGS / "tiny.yaml", ["decode.audio_channel=1", "faces.select=left",
                                             "faces.thresholds=[0.5, 0.6, 0.6]", "decode.audio_channel=null"])
    assert isinstance(cfg.decode, DecodeConfig) and isinstance(cfg.faces, FaceConfig)
    assert cfg.decode.audio_channel is None  # the later override wins
    assert cfg.faces.select == "left" and cfg.faces.thresholds == (0.5, 0.6, 0.6)
    assert cfg.decode.max_side == 320


def test_parse_overrides_nests_keys():
    assert parse_overrides(["a.b=1", "a.c=x", "d=[1, 2]"]) == {"a": {"b": 1, "c": "x"}, "d": [1, 2]}


def test_model_config_defaults_are_the_paper():
    assert ModelConfig().num_emotions == 6
    assert ModelConfig().audio_embed_dims == (128, 256, 512)


def test_model_config_lives_beside_the_model():
    from fv2es.models.config import ModelConfig as Home

    assert ModelConfig is Home  # fv2es.config re-exports it


@pytest.mark.parametrize(
    "overrides, keys",
    [
        (["faces.image_size=64"], ("faces.image_size (64)", "model.visual_arch", "48x48")),
        (["decode.sample_rate=22050"], ("decode.sample_rate (22050)", "spectrogram.sample_rate (16000)")),
        (["decode.sample_rate=8000", "spectrogram.sample_rate=8000"], None),
        (["spectrogram.n_mels=64"], ("spectrogram.n_mels (64)", "spectrogram.piece_frames (32)", "(2, 32, 32)",
                                     "model.audio_arch", "(4, 32, 32)")),
        (["spectrogram.n_mels=256", "spectrogram.piece_frames=64"], ("spectrogram.n_mels (256)", "(4, 64, 64)")),
    ],
)
def test_sections_that_disagree_are_refused_naming_both_keys(overrides, keys):
    if keys is None:  # both sides changed together: they agree, so it loads
        cfg = load_config(CONFIGS / "tiny.yaml", overrides)
        assert cfg.decode.sample_rate == cfg.spectrogram.sample_rate == 8000
        return
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "tiny.yaml", overrides)
    for key in keys:
        assert key in str(err.value)


def test_default_sections_use_the_model_geometry():
    from fv2es.models import geometry

    cfg = Config()
    assert cfg.faces.image_size == cfg.model.face_size == geometry.FACE_SIZE == 48
    assert cfg.decode.sample_rate == cfg.spectrogram.sample_rate == geometry.SAMPLE_RATE == 16000
    assert cfg.model.piece_shape == geometry.PIECE_SHAPE == (4, 32, 32)
    assert (cfg.spectrogram.n_mels, cfg.spectrogram.piece_frames) == (geometry.N_MELS, geometry.PIECE_FRAMES)


def test_unknown_branch_architecture_is_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match="model.audio_arch: unknown audio architecture 'wav2vec'; known: nest"):
        load_config(CONFIGS / "tiny.yaml", ["model.audio_arch=wav2vec"])
    # a branch the modalities leave out is not built, so its name is not checked
    cfg = load_config(CONFIGS / "tiny.yaml", ["model.audio_arch=wav2vec", "model.modalities=tv"])
    assert cfg.model.audio_arch == "wav2vec"


def test_the_scoring_digest_keeps_what_changes_scores_and_drops_the_decoders_priority():
    from fv2es.models.config import ModelConfig
    from fv2es.score.job import scoring_config

    def digest(*overrides):
        return scoring_config(load_config(None, list(overrides)), ModelConfig())

    assert digest("decode.nice=10") == digest()  # how fast, not what: a resume may change it
    assert digest("decode.skip_nonref=true") != digest()  # other frames are sampled
    assert "nice" not in digest()["decode"] and digest()["decode"]["skip_nonref"] is False
