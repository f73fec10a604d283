from __future__ import annotations

import pytest
import torch

from mmaif.errors import InputError
from mmaif.model.text import T5Encoder, make_text_encoder
from mmaif.model.tokenizers import (
    PixelTokenizer,
    crop_to,
    latent_stats,
    make_tokenizer,
    pad_to_multiple,
)

from .conftest import tiny_cosmos, tiny_vae


def test_pixel_tokenizer_is_exact():
    tok = PixelTokenizer()
    x = torch.rand(2, 3, 40, 64) * 2 - 1
    z = tok.encode(x)
    assert z.shape == (2, 192, 5, 8) and tok.z == 192 and tok.f == 8
    assert torch.equal(tok.decode(z), x)


@pytest.mark.parametrize("h,w", [(1, 1), (5, 9), (37, 23), (16, 16)])
def test_pad_and_crop(h, w):
    x = torch.rand(1, 3, h, w)
    p, size = pad_to_multiple(x, 16)
    assert p.shape[-2] % 16 == 0 and p.shape[-1] % 16 == 0 and size == (h, w)
    assert torch.equal(crop_to(p, size), x)


def test_kl_tokenizer_from_a_diffusers_folder(tmp_path):
    tiny_vae(tmp_path / "vae")
    tok = make_tokenizer(f"kl:{tmp_path / 'vae'}")
    assert (tok.f, tok.z, tok.scale, tok.shift) == (8, 4, 0.3611, 0.1159)
    x = torch.rand(1, 3, 32, 48) * 2 - 1
    z = tok.encode(x)
    assert z.shape == (1, 4, 4, 6)
    zr = z.clone().requires_grad_(True)
    y = tok.decode(zr)
    assert y.shape == x.shape
    y.mean().backward()  # the decoder passes gradients for a pixel-space loss
    assert zr.grad is not None and zr.grad.abs().sum() > 0


def test_cosmos_tokenizer_from_torchscript_files(tmp_path):
    folder = tmp_path / "Cosmos-0.1-Tokenizer-CI8x8"
    tiny_cosmos(folder)
    tok = make_tokenizer(f"cosmos:{folder}")
    assert (tok.f, tok.z) == (8, 16)
    x = torch.rand(2, 3, 24, 40) * 2 - 1
    z = tok.encode(x)
    assert z.shape == (2, 16, 3, 5) and tok.decode(z).shape == x.shape
    stats = latent_stats(tok, [x[0], x[1]])
    assert len(stats["mean"]) == 16
    tok.set_stats(torch.tensor(stats["mean"]), torch.tensor(stats["std"]))
    zn = tok.encode(x)
    assert zn.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert torch.allclose(zn.std(dim=(0, 2, 3), unbiased=False), torch.ones(16), atol=1e-3)


def test_tokenizer_errors(tmp_path):
    with pytest.raises(InputError, match=r"missing encoder\.jit"):
        make_tokenizer(f"cosmos:{tmp_path}")
    with pytest.raises(InputError, match=r"no config\.json"):
        make_tokenizer(f"kl:{tmp_path}")
    with pytest.raises(InputError, match="unknown tokenizer"):
        make_tokenizer("vqgan")


@pytest.fixture(scope="module")
def minilm():
    return make_text_encoder("minilm")


def test_minilm_encodes_real_text(minilm):
    prompts = ["Remove the haze from the visible image and fuse them.",
               "Clear the fog in the visible image, then fuse the two.",
               "A recipe for banana bread with walnuts."]
    tokens, mask, pooled = minilm.encode(prompts)
    assert pooled.shape == (3, 384) and tokens.shape[0] == 3 and tokens.shape[2] == 384
    assert mask.dtype == torch.bool and mask.sum(1).min() > 3
    sim = pooled @ pooled.T
    assert sim[0, 1] > sim[0, 2] + 0.2  # paraphrases are closer than unrelated text
    assert torch.allclose(pooled.norm(dim=1), torch.ones(3), atol=1e-5)
    again = minilm.encode([prompts[1]])[2]
    assert torch.equal(again[0], pooled[1]) and len(minilm.cache) >= 3


def _tiny_t5(folder):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    words = ["<pad>", "</s>", "<unk>", "remove", "the", "haze", "and", "fuse", "them", "rain"]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=len(words), d_model=32, d_kv=8, num_heads=4, num_layers=2,
                   d_ff=64, pad_token_id=0, eos_token_id=1)
    T5EncoderModel(cfg).save_pretrained(folder)


def test_t5_tiny_loads_from_a_folder(tmp_path):
    _tiny_t5(tmp_path / "t5")
    enc = make_text_encoder(f"t5:{tmp_path / 't5'}")
    tokens, mask, pooled = enc.encode(["remove the haze and fuse them", "fuse them"])
    assert tokens.shape == (2, 6, 32) and pooled.shape == (2, 32)  # 6 words, one token each
    assert mask.tolist() == [[True] * 6, [True, True] + [False] * 4]
    assert torch.allclose(pooled[1], tokens[1, :2].mean(0), atol=1e-6)
    bf16 = make_text_encoder(f"t5-bf16:{tmp_path / 't5'}")
    assert bf16.model.dtype == torch.bfloat16
    with pytest.raises(InputError, match="float16"):
        T5Encoder(tmp_path / "t5", dtype=torch.float16)


def test_info_command(cli):
    code, out, _ = cli("info", "--preset", "tiny", "--size", "64x40")
    assert code == 0  # f = 8 x patch 2: padded to a multiple of 16
    assert "padded to 64x48" in out and "token grid 4x3 = 12 tokens" in out
    assert "GFLOPs per image: DiT" in out
    assert "M active per token" in out
    code, out, _ = cli("info", "--preset", "small", "--size", "64x40")
    assert code == 0 and "patch 1" in out and "token grid 8x5 = 40 tokens" in out
    code, out, _ = cli("info", "--preset", "base", "--size", "64x48", "--flow")
    assert code == 0 and "patch 2" in out and "4x3 = 12 tokens" in out and "flow" in out
    assert cli("info", "--size", "64by48")[0] == 2
    assert cli("info", "--preset", "huge")[0] == 2


def test_latent_stats_command(cli, tmp_path):
    from .conftest import save, texture

    folder = tmp_path / "cosmos"
    tiny_cosmos(folder)
    for k in range(3):
        save(tmp_path / "imgs" / f"{k}.png", texture(32, 40, 3, k))
    code, _, err = cli("latent-stats", "--tokenizer", f"cosmos:{folder}", "--data",
                       tmp_path / "imgs")
    assert code == 0, err
    tok = make_tokenizer(f"cosmos:{folder}")  # picks up latent_stats.json
    assert tok.mean.shape == (1, 16, 1, 1) and tok.std.min() > 0


def test_bench_command(cli, tmp_path):
    import json

    code, out, err = cli("bench", "--presets", "tiny", "--sizes", "64x48", "--no-pixel-space",
                         "-o", tmp_path / "b.json")
    assert code == 0, err
    rows = json.loads((tmp_path / "b.json").read_text())
    # tiny: f = 8, patch 2 -> a 4 x 3 token grid
    assert [(r["objective"], r["tokens"]) for r in rows] == [("reg", 12), ("flow", 12)]
    assert all(r["seconds"] > 0 and r["gflop"] > 0 and r["peak_mb"] > 0 for r in rows)
    assert "GFLOP/s" in out and "matmul" in out
    code, out, err = cli("bench", "--presets", "tiny", "--sizes", "64x48", "--json")
    assert code == 0, err
    rows = json.loads(out)  # stdout holds only the JSON list
    assert isinstance(rows, list) and "matmul" in err
    keys = {"preset", "objective", "steps", "space", "device", "width", "height", "seconds",
            "peak_mb"}
    assert all(keys <= set(r) for r in rows)
    assert {(r["objective"], r["space"], r["steps"]) for r in rows} == {
        ("reg", "latent", 1), ("flow", "latent", 1), ("reg", "pixel", 1)}
    assert {(r["width"], r["height"]) for r in rows if r["space"] == "latent"} == {(64, 48)}
    assert cli("bench", "--presets", "huge")[0] == 2
