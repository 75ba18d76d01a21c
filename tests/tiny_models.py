"""Tiny models with random weights, built offline from configs, the way diffusers and
transformers test themselves.

Each builder writes a folder with ``save_pretrained`` (or ``torch.save`` for the aesthetic
head) so that the providers load it through the same ``from_pretrained`` path a real
checkpoint takes. The weights are random: the pictures are noise and the scores mean
nothing, but every shape, dtype, tokenizer and loading step is the real one.

    python tests/tiny_models.py DIR     # writes DIR/pipeline, DIR/clip, DIR/aesthetic-head.pth
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

#: the CLIP text tokenizer's special tokens; ids 0 and 1 so the configs below can name them
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
#: width of every tiny CLIP (text hidden size, vision hidden size, projection)
WIDTH = 32
VOCAB_SIZE = 1000


def _byte_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values (byte-level BPE's base alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            chars.append(256 + n)
            n += 1
    return [chr(c) for c in chars]


def write_tokenizer_files(folder: Path) -> None:
    """vocab.json and merges.txt for a byte-level CLIP BPE that can spell any text.

    Every byte stands alone and at a word's end ("a</w>"); a few merges make common
    words single tokens, so prompts of different words tokenise differently.
    """
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = _byte_alphabet()
    vocab: dict[str, int] = {BOS: 0, EOS: 1}
    for ch in alphabet:
        vocab.setdefault(ch, len(vocab))
    for ch in alphabet:
        vocab.setdefault(ch + "</w>", len(vocab))
    merges = ["t h", "th e</w>", "c a", "ca t</w>", "o f</w>", "a n"]
    for merge in merges:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    assert len(vocab) <= VOCAB_SIZE
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def _tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    write_tokenizer_files(folder)
    return CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=77)


def _save_tokenizer(tokenizer, folder: Path, source: Path) -> None:
    tokenizer.save_pretrained(folder)
    # transformers 5 writes only tokenizer.json; the slow-path loaders want the pair too
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(source / name, folder / name)


def _text_config():
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=WIDTH, intermediate_size=37,
        layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=2, vocab_size=VOCAB_SIZE,
        max_position_embeddings=77, projection_dim=WIDTH,
    )


def build_pipeline(folder: Path) -> Path:
    """A Stable Diffusion pipeline with a tiny UNet, VAE and CLIP text encoder, saved to ``folder``."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=WIDTH, norm_num_groups=2,
    )
    vae = AutoencoderKL(
        block_out_channels=[4, 8], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"], up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )
    text_encoder = CLIPTextModel(_text_config())
    vocab_dir = folder.parent / (folder.name + "-vocab")
    tokenizer = _tokenizer(vocab_dir)
    pipe: Any = StableDiffusionPipeline(
        unet=unet, vae=vae, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    _save_tokenizer(tokenizer, folder / "tokenizer", vocab_dir)
    return folder


def build_clip(folder: Path) -> Path:
    """A tiny CLIPModel with its processor (tokenizer and 32x32 image processor), saved to ``folder``."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=_text_config().to_dict(),
        vision_config=dict(
            image_size=32, patch_size=8, hidden_size=WIDTH, intermediate_size=37, num_attention_heads=4,
            num_hidden_layers=2, projection_dim=WIDTH,
        ),
        projection_dim=WIDTH,
    )
    model = CLIPModel(config)
    vocab_dir = folder.parent / (folder.name + "-vocab")
    tokenizer = _tokenizer(vocab_dir)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(vocab_dir / name, folder / name)
    return folder


def build_aesthetic_head(path: Path, width: int = WIDTH) -> Path:
    """A LAION aesthetic MLP head with random weights over ``width``-wide CLIP image embeddings,
    saved as a plain state dict the way the original ``sac+logos+ava1-l14-linearMSE.pth`` is."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    last = nn.Linear(16, 1)
    nn.init.constant_(last.bias, 5.0)  # centre the random head's output inside 0..10
    layers = nn.Sequential(
        nn.Linear(width, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
        nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), last,
    )
    state = {f"layers.{k}": v for k, v in layers.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def build_all(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    return {
        "pipeline": build_pipeline(root / "pipeline"),
        "clip": build_clip(root / "clip"),
        "aesthetic_head": build_aesthetic_head(root / "aesthetic-head.pth"),
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/tiny_models.py DIR")
    for name, path in build_all(Path(sys.argv[1])).items():
        print(f"{name}: {path}")
