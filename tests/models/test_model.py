import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from fv2es.models import create_model
from fv2es.models.temporal import pad_packed

from .conftest import make_sample


def test_ragged_batch_shapes(tiny_model, collate, tiny_config):
    rng = np.random.default_rng(0)
    samples = [make_sample(rng, 3, 5), make_sample(rng, 11, 1, text="no"), make_sample(rng, 1, 9)]
    x = collate(samples)
    assert x.faces.shape == (15, 3, 48, 48) and x.face_lens.tolist() == [3, 11, 1]
    assert x.pieces.shape == (15, 4, 32, 32) and x.piece_lens.tolist() == [5, 1, 9]
    tiny_model.eval()
    with torch.no_grad():
        logits = tiny_model(x)
        per_mod, present = tiny_model.modality_logits(x)
    assert logits.shape == (3, tiny_config.num_emotions)
    assert per_mod.shape == (3, tiny_config.num_emotions, 3)
    assert present.all()
    assert torch.isfinite(logits).all()


def test_pad_packed_slices_each_utterance_back():
    feats = torch.arange(6 * 2, dtype=torch.float32).view(6, 2)
    padded, mask = pad_packed(feats, torch.tensor([2, 0, 4]))
    assert padded.shape == (3, 4, 2)
    assert torch.equal(padded[0, :2], feats[:2]) and torch.equal(padded[2], feats[2:6])
    assert mask.tolist() == [[False, False, True, True], [True] * 4, [False] * 4]
    padded, mask = pad_packed(torch.zeros((0, 2)), torch.tensor([0, 0]))
    assert padded.shape == (2, 0, 2) and mask.shape == (2, 0)


def test_output_does_not_depend_on_batch_mates(tiny_model, collate):
    rng = np.random.default_rng(1)
    target = make_sample(rng, 4, 6, text="what a lovely day")
    others = [make_sample(rng, 17, 2, text="a much longer transcript with many more words in it"),
              make_sample(rng, 0, 13, text=""), make_sample(rng, 1, 0)]
    tiny_model.eval()
    with torch.no_grad():
        alone = tiny_model(collate([target]))[0]
        first = tiny_model(collate([target, *others]))[0]
        middle = tiny_model(collate([others[0], target, others[1]]))[1]
        last = tiny_model(collate([*others, target]))[3]
    for batched in (first, middle, last):
        torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def _count(module, kind):
    return sum(isinstance(m, kind) for m in module.modules())


def test_reparameterized_equals_training_form_with_fewer_layers(tiny_config, collate):
    torch.manual_seed(0)
    model = create_model(dataclasses.replace(tiny_config, modalities="v"))
    # Non-trivial BN statistics, as after training, so the fold has something to fold.
    model.train()
    rng = np.random.default_rng(2)
    with torch.no_grad():
        for _ in range(3):
            model(collate([make_sample(rng, 8, 0), make_sample(rng, 5, 0)]))
    model.eval()
    x = collate([make_sample(rng, 6, 0), make_sample(rng, 3, 0)])
    with torch.no_grad():
        before = model(x)
        feats_before = model.visual(x.faces)
    convs, norms = _count(model.visual, nn.Conv2d), _count(model.visual, nn.BatchNorm2d)
    model.reparameterize()
    assert model.reparameterized
    with torch.no_grad():
        after = model(x)
        feats_after = model.visual(x.faces)
    torch.testing.assert_close(feats_after, feats_before, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    # 5 blocks of 2 convs + 2 BNs (+ an identity BN where in == out) each become one conv with
    # bias; the stem keeps its conv + BN.
    ch = tiny_config.visual_channels
    identities = sum(a == b for a, b in zip(ch[:-1], ch[1:]))
    assert (convs, norms) == (1 + 10, 1 + 10 + identities)
    assert (_count(model.visual, nn.Conv2d), _count(model.visual, nn.BatchNorm2d)) == (1 + 5, 1)


def test_paper_parameter_counts(tiny_config):
    from fv2es.config import config_from_dict

    paper = config_from_dict({"model": {"preset": "fv2es_paper", "modalities": "av"}}).model
    model = create_model(paper)
    nest = sum(p.numel() for p in model.audio.nest.parameters())
    assert round(nest / 1e6, 1) == 66.7
    audio_first = model.audio.proj[1]
    visual_first = model.visual.proj[1]
    assert (audio_first.in_features, audio_first.out_features) == (32768, 1024)
    assert (visual_first.in_features, visual_first.out_features) == (4608, 1024)
    assert model.audio.proj[3].out_features == paper.trans_dim == 64
    # The whole visual branch of the paper in training form: stem (conv with bias, as the seed's)
    # + five RepVGG blocks + projection.
    stem = 5 * 5 * 3 * 64 + 64 + 2 * 64
    blocks = sum(9 * a * b + a * b + 4 * b + (2 * b if a == b else 0)
                 for a, b in [(64, 64), (64, 64), (64, 128), (128, 256), (256, 512)])
    proj = 4608 * 1024 + 1024 + 1024 * 64 + 64
    assert sum(p.numel() for p in model.visual.parameters()) == stem + blocks + proj == 6_596_800


def test_loss_decreases_when_overfitting_a_small_batch(tiny_config, collate):
    torch.manual_seed(0)
    model = create_model(tiny_config)
    rng = np.random.default_rng(3)
    words = ["angry", "excited", "frustrated", "happy", "neutral", "sad"]
    samples = [make_sample(rng, 2 + i % 3, 1 + i % 4, text=f"I feel {w}") for i, w in enumerate(words)]
    x = collate(samples)
    target = torch.eye(6)
    text_params = set(map(id, model.text_parameters()))
    other = [p for p in model.parameters() if id(p) not in text_params]
    optim = torch.optim.Adam([{"params": other, "lr": 3e-3},
                              {"params": model.text_parameters(), "lr": 3e-4}])
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.full((6,), 5.0))
    model.train()
    losses = []
    for _ in range(40):
        optim.zero_grad()
        loss = loss_fn(model(x), target)
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses
    model.eval()
    with torch.no_grad():
        assert model(x).argmax(1).tolist() == list(range(6))


def test_missing_modality_is_masked_out_of_fusion(tiny_model, collate):
    rng = np.random.default_rng(4)
    no_face = make_sample(rng, 0, 5, text="hello")
    no_audio = make_sample(rng, 4, 0, text="hello")
    no_text = make_sample(rng, 4, 5, text="   ")
    full = make_sample(rng, 4, 5, text="hello")
    x = collate([no_face, no_audio, no_text, full])
    assert x.text_present.tolist() == [True, True, False, True]
    tiny_model.eval()
    with torch.no_grad():
        per_mod, present = tiny_model.modality_logits(x)
        fused = tiny_model(x)
        order = tiny_model.modalities  # the seed's stacking order: text, visual, audio
        assert present.tolist() == [[True, False, True], [True, True, False], [False, True, True], [True] * 3]
        w = tiny_model.fusion.weight[0]
        expected = (per_mod * present[:, None, :]).matmul(w)
        torch.testing.assert_close(fused, expected)
        # An absent branch has no influence: scrambling its weights leaves that sample unchanged.
        for p in tiny_model.visual.parameters():
            p.add_(torch.randn_like(p))
        changed = tiny_model(x)
    assert order == "tva"
    torch.testing.assert_close(changed[0], fused[0])
    assert not torch.allclose(changed[3], fused[3])


def test_sample_with_no_modality_gets_zero_logits(tiny_model, collate):
    x = collate([{"text": "", "faces": None, "pieces": None}])
    tiny_model.eval()
    with torch.no_grad():
        assert torch.equal(tiny_model(x), torch.zeros(1, 6))


def test_batch_missing_a_modality_everywhere_still_trains(tiny_model, collate):
    # DDP needs every parameter in the graph even when no sample has faces.
    x = collate([{"text": "hi", "faces": None, "pieces": None}, {"text": "", "faces": None, "pieces": None}])
    tiny_model.train()
    tiny_model(x).sum().backward()
    assert all(p.grad is not None for n, p in tiny_model.named_parameters() if not n.startswith("text."))


def test_single_modality_returns_its_logits(tiny_config, collate):
    torch.manual_seed(0)
    model = create_model(dataclasses.replace(tiny_config, modalities="a")).eval()
    x = collate([make_sample(np.random.default_rng(5), 0, 3)])
    with torch.no_grad():
        per_mod, _ = model.modality_logits(x)
        torch.testing.assert_close(model(x), per_mod[..., 0])
    assert model.fusion is None and not hasattr(model, "text")


def test_unavailable_text_model_names_the_fix(tiny_config):
    bad = dataclasses.replace(tiny_config, text_model="no-such-org/no-such-model")
    with pytest.raises(OSError, match="not available offline.*model.text_model=minilm"):
        create_model(bad)


@pytest.mark.gpu
def test_cuda_bf16_forward_matches_cpu(tiny_model, collate):
    rng = np.random.default_rng(6)
    x = collate([make_sample(rng, 5, 4), make_sample(rng, 2, 7)])
    tiny_model.eval().reparameterize()
    with torch.inference_mode():
        ref = tiny_model(x)
        gpu = tiny_model.to("cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = gpu(x.to("cuda")).float().cpu()
    torch.testing.assert_close(torch.sigmoid(out), torch.sigmoid(ref), atol=3e-2, rtol=0)
