"""Fixtures for the generative tests: offline MiniLM, tiny random diffusers/transformers models, no network."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread_no_network(monkeypatch):
    """Tiny models on a shared 2-core box run faster on one thread; any network use is an error."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def refuse(*args, **kwargs):
        raise AssertionError(f"a generative test tried to open a network connection: {args[:1]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def encoder():
    from generec.generative.instructor import SentenceEncoder

    return SentenceEncoder()


def tiny_clip_tokenizer(folder: Path):
    """A CLIP tokenizer over single characters, from a generated vocab (the hub one is unreachable)."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in [chr(c) for c in range(97, 123)] + list("0123456789.,!?'-"):
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77), len(
        vocab
    )


def tiny_sd_pipeline(folder: Path):
    """A 64x64 Stable Diffusion pipeline with 4/8-channel UNet and VAE and a 2-layer 32-d CLIP text model."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tok, n_vocab = tiny_clip_tokenizer(folder / "tok")
    text_cfg = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=n_vocab + 10,
        max_position_embeddings=77,
    )
    return StableDiffusionPipeline(
        vae=AutoencoderKL(
            block_out_channels=[4, 8],
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            norm_num_groups=2,
            down_block_types=["DownEncoderBlock2D"] * 2,
            up_block_types=["UpDecoderBlock2D"] * 2,
        ),
        text_encoder=CLIPTextModel(text_cfg),
        tokenizer=tok,
        unet=UNet2DConditionModel(
            block_out_channels=(4, 8),
            layers_per_block=1,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            norm_num_groups=2,
        ),
        scheduler=DDIMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        ),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


TINY_LM_WORDS = (
    "<unk> <eos> a an the red blue nail polish lip balm cherry new item title instruction : < > / ."
)


def tiny_causal_lm(
    folder: Path,
    words: str = TINY_LM_WORDS,
    n_positions: int = 256,
    chat_template: str | None = None,
    only_eos: bool = False,
) -> Path:
    """A random 2-layer GPT-2 with a word-level tokenizer (``words``, ids 0/1 = unk/eos), saved to ``folder``
    and loaded back by path in tests. ``only_eos``: the tied head always prefers <eos> (an LM that answers
    nothing)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    vocab = words.split()
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, unk_token="<unk>", eos_token="<eos>", pad_token="<eos>"
    )
    if chat_template:
        tok.chat_template = chat_template
    config = GPT2Config(
        vocab_size=len(vocab),
        n_positions=n_positions,
        n_embd=16,
        n_layer=2,
        n_head=2,
        bos_token_id=1,
        eos_token_id=1,
    )
    model = GPT2LMHeadModel(config)
    if only_eos:  # final hidden state = the <eos> embedding (tied head)
        with torch.no_grad():
            wte = model.transformer.wte.weight
            wte[1] *= 20.0
            model.transformer.ln_f.weight.zero_()
            model.transformer.ln_f.bias.copy_(wte[1])
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def make_tiny_causal_lm():
    """``tiny_causal_lm`` for test modules (a conftest is not importable by name: there are several)."""
    return tiny_causal_lm


@pytest.fixture(scope="module")
def image_backend(tmp_path_factory):
    """A tiny random Stable Diffusion saved to disk and loaded back by path (as a user's model would be)."""
    from generec.generative.content import ImageBackend

    folder = tmp_path_factory.mktemp("sd")
    tiny_sd_pipeline(folder / "parts").save_pretrained(folder / "model")
    backend = ImageBackend.from_pretrained(str(folder / "model"), height=64, width=64, steps=2)
    backend.text2img.set_progress_bar_config(disable=True)
    backend.img2img.set_progress_bar_config(disable=True)
    return backend


@pytest.fixture(scope="module")
def title_backend(tmp_path_factory):
    from generec.generative.content import TitleBackend

    return TitleBackend.from_pretrained(str(tiny_causal_lm(tmp_path_factory.mktemp("lm"))), max_new_tokens=4)
