"""Random-weight caption models built locally, for tests, benchmarks and offline demos.

No download: a word-level tokenizer from the `tokenizers` library, model configs sized by
`hidden` / `layers`, seeded weights, `save_pretrained` to a folder that `CaptionConfig.model`
then loads by path. Their captions are word salad from a small remote-sensing vocabulary;
what they exercise is the loading, batching and generation code a real model goes through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

WORDS = (
    "a an the of and with in on near along between image satellite field fields road roads "
    "river building buildings urban area forest water port airport runway houses trees "
    "farmland crops industrial city small large dense sparse grid parallel residential "
    "bridge harbor ships coast beach mountain desert snow rail track mine quarry"
).split()

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)


def tokenizer(extra: tuple[str, ...] = ()) -> Any:
    """A word-level fast tokenizer over WORDS (+ punctuation and chat roles)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>", *extra]
    words = [*WORDS, ".", ",", ":", "user", "assistant"]
    vocab = {t: i for i, t in enumerate(specials + words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=list(extra),
    )


def _blocks(hidden: int, layers: int) -> dict[str, Any]:
    return {
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
    }


def _gpt2(tok: Any, hidden: int, layers: int, **extra: Any) -> Any:
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=len(tok),
        n_embd=hidden,
        n_layer=layers,
        n_head=2,
        n_positions=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **extra,
    )


def build_llava(path: str | Path, hidden: int = 16, layers: int = 1, image: int = 32) -> str:
    """A chat-template VLM (LLaVA: CLIP vision tower, Llama text model)."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tok = tokenizer(("<image>",))
    tok.chat_template = CHAT_TEMPLATE
    vision = CLIPVisionConfig(
        **_blocks(hidden, layers), image_size=image, patch_size=8, projection_dim=hidden
    )
    text = LlamaConfig(
        **_blocks(hidden, layers),
        vocab_size=len(tok),
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    cfg = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(cfg).eval()
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": image}, crop_size={"height": image, "width": image}
        ),
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        chat_template=CHAT_TEMPLATE,
        num_additional_image_tokens=1,
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


def build_blip(path: str | Path, hidden: int = 16, layers: int = 1, image: int = 32) -> str:
    """An encoder-decoder captioner (BLIP)."""
    import torch
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    tok = tokenizer()
    cfg = BlipConfig(
        vision_config={**_blocks(hidden, layers), "image_size": image, "patch_size": 8},
        text_config={
            **_blocks(hidden, layers),
            "vocab_size": len(tok),
            "encoder_hidden_size": hidden,
            "bos_token_id": tok.bos_token_id,
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": tok.pad_token_id,
            "sep_token_id": tok.eos_token_id,
        },
        projection_dim=hidden,
    )
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(cfg).eval()
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": image, "width": image}), tokenizer=tok
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


def build_vision_encoder_decoder(
    path: str | Path, hidden: int = 16, layers: int = 1, image: int = 32
) -> str:
    """An encoder-decoder captioner (VisionEncoderDecoder: ViT encoder, GPT-2 decoder)."""
    import torch
    from transformers import (
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    tok = tokenizer()
    encoder = ViTConfig(**_blocks(hidden, layers), image_size=image, patch_size=8)
    decoder = _gpt2(tok, hidden, layers, add_cross_attention=True)
    cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    cfg.decoder_start_token_id = tok.bos_token_id
    cfg.pad_token_id = tok.pad_token_id
    cfg.eos_token_id = tok.eos_token_id
    torch.manual_seed(0)
    model = VisionEncoderDecoderModel(cfg).eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    ViTImageProcessor(size={"height": image, "width": image}).save_pretrained(path)
    return str(path)


def build_text_model(path: str | Path, hidden: int = 16, layers: int = 1) -> str:
    """A text-generation model (GPT-2) for the optional LLM rewrite."""
    import torch
    from transformers import GPT2LMHeadModel

    tok = tokenizer()
    cfg = _gpt2(tok, hidden, layers)
    torch.manual_seed(0)
    GPT2LMHeadModel(cfg).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


BUILDERS = {
    "llava": build_llava,
    "blip": build_blip,
    "vision-encoder-decoder": build_vision_encoder_decoder,
}


def serve(
    model: str,
    log: str | Path,
    timeout: float = 180,
    server: str = "transformers",
    opts: tuple[str, ...] = (),
) -> tuple[Any, str]:
    """An OpenAI-compatible server of `model` on a free loopback port, offline, on the CPU:
    `transformers serve` (the `serving` extra of transformers) or `sarlo serve` (server
    "sarlo", `opts` its options); (the process, its /v1 base URL) once it lists the model.
    For tests and benchmarks of the openai caption backend."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    where = ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu", *opts]
    bin_dir = Path(sys.executable).parent
    if server == "sarlo":
        cmd = [str(bin_dir / "sarlo"), "serve", str(model), *where]
    else:
        cmd = [str(bin_dir / "transformers"), "serve", str(model), *where]
    with open(log, "wb") as f:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"{base}/models", timeout=5).ok:
                return proc, base
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            tail = Path(log).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{server} serve {model} did not start:\n{tail}")
        time.sleep(0.5)
