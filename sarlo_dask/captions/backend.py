"""Caption models on transformers: chat-template VLMs and encoder-decoder captioners.

A model is loaded once per worker and reused for every batch: the worker's `CaptionModels`
plugin (set up once per worker by the caption pool) holds it between tasks, outside a worker
the process's own; `load_counts()` says how often each was loaded, so tests can hold it to
once.

- chat VLMs (Qwen2-VL, SmolVLM, Idefics3, LLaVA, ...): the prompt goes through the
  processor's chat template with the image; greedy decoding, left-padded batches.
- captioners (BLIP, VisionEncoderDecoder): no instruction; the prompt's `prefix` (BLIP's
  conditional text, optional) and its token limits make the three lengths.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sarlo_dask.captions.interface import CaptionBackend, Generated
from sarlo_dask.config import CaptionConfig, PromptSpec
from sarlo_dask.driver.worker_state import FilledOnWorker, on_worker


class CaptionModels(FilledOnWorker):
    """The caption models one worker loaded, kept between its tasks, and how many times each
    was loaded and how many caption batches it ran (tests hold loads to once per worker).
    Registered by the caption pool (idempotent: a worker's models outlive the builds of one
    cluster); dropped with the worker."""

    name = "sarlo-caption-models"
    idempotent = True

    def __init__(self) -> None:
        self.models: dict[str, Any] = {}
        self.loads: Counter[str] = Counter()
        self.batches = 0
        self.threads: int | None = None
        self.lock = threading.Lock()

    def setup(self, worker: Any) -> None:
        self.threads = worker.state.nthreads  # torch uses these, not every core

    def teardown(self, worker: Any) -> None:
        self.models.clear()

    def get(self, key: str, make: Callable[[], Any]) -> Any:
        with self.lock:
            if key not in self.models:
                if self.threads is not None:
                    import torch

                    torch.set_num_threads(max(1, self.threads))
                self.models[key] = make()
                self.loads[key] += 1
            return self.models[key]


_OWN = CaptionModels()
"""the models of a process that is not a Dask worker (a caption batch called directly)"""


def caption_models(worker: Any = None) -> CaptionModels:
    """The CaptionModels of `worker` (None: the one running this task), or the process's own
    outside a worker (or on a worker the plugin was not registered on)."""
    return on_worker(CaptionModels, _OWN, worker)


def load_counts(dask_worker: Any = None) -> dict[str, int]:
    """How many times this worker (or process) loaded each model (by model id); a worker's
    through `client.run(load_counts)`."""
    return dict(caption_models(dask_worker).loads)


def _device_dtype(cfg: CaptionConfig) -> tuple[str, Any]:
    import torch

    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device, torch.float32  # half precision on CPU is slow and lossy
    if cfg.dtype == "auto":
        return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return device, getattr(torch, cfg.dtype)


def _is_chat(processor: Any) -> bool:
    template = getattr(processor, "chat_template", None) or getattr(
        getattr(processor, "tokenizer", None), "chat_template", None
    )
    return bool(template)


@dataclass
class Captioner:
    """One loaded model with what it needs to turn images and a prompt into text."""

    model: Any
    image_processor: Any
    tokenizer: Any
    processor: Any | None
    chat: bool
    device: str

    @classmethod
    def load(cls, cfg: CaptionConfig) -> Captioner:
        """From a local folder or a hub id (offline with HF_HUB_OFFLINE=1)."""
        from transformers import (
            AutoImageProcessor,
            AutoModelForImageTextToText,
            AutoProcessor,
            AutoTokenizer,
        )
        from transformers.utils.logging import disable_progress_bar

        assert cfg.model is not None
        device, dtype = _device_dtype(cfg)
        kw: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
        disable_progress_bar()  # worker logs: no bar per load
        auto: Any = AutoModelForImageTextToText  # its stubs take the class, not a path
        model = auto.from_pretrained(cfg.model, dtype=dtype, **kw).to(device).eval()
        if _architecture(cfg.model) == "VisionEncoderDecoderModel":
            # its AutoProcessor is the bare tokenizer: take both halves explicitly
            processor = None
            image_processor = AutoImageProcessor.from_pretrained(cfg.model, **kw)
            tokenizer = AutoTokenizer.from_pretrained(cfg.model, **kw)
        else:
            processor = AutoProcessor.from_pretrained(cfg.model, **kw)
            image_processor = getattr(processor, "image_processor", None)
            tokenizer = getattr(processor, "tokenizer", processor)
        chat = cfg.kind == "chat" or (cfg.kind == "auto" and _is_chat(processor))
        if chat:
            tokenizer.padding_side = "left"  # generation continues from the right end
        return cls(model, image_processor, tokenizer, processor, chat, device)

    def generate(self, images: list[Any], prompt: PromptSpec) -> list[str]:
        """One caption per image (PIL RGB), greedy, as the prompt's limits say."""
        import torch

        limits = {
            "max_new_tokens": prompt.max_new_tokens,
            "min_new_tokens": prompt.min_new_tokens,
            "do_sample": False,
            "num_beams": 1,
        }
        with torch.inference_mode():
            if self.chat:
                assert self.processor is not None
                messages = [
                    {
                        "role": "user",
                        "content": [{"type": "image"}, {"type": "text", "text": prompt.text}],
                    }
                ]
                text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
                inputs = self.processor(
                    images=images, text=[text] * len(images), return_tensors="pt", padding=True
                )
                inputs = self._to_device(inputs)
                out = self.model.generate(**inputs, **limits)
                out = out[:, inputs["input_ids"].shape[1] :]
            elif self.processor is not None:
                kw: dict[str, Any] = {"images": images, "return_tensors": "pt"}
                if prompt.prefix:
                    kw["text"] = [prompt.prefix] * len(images)
                inputs = self._to_device(self.processor(**kw))
                out = self.model.generate(**inputs, **limits)
            else:
                pixels = self.image_processor(images=images, return_tensors="pt").pixel_values
                out = self.model.generate(
                    pixel_values=pixels.to(self.device, self.model.dtype), **limits
                )
        texts = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [" ".join(t.split()) for t in texts]

    def _to_device(self, inputs: Any) -> Any:
        import torch

        moved = {}
        for k, v in inputs.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device)
                if v.is_floating_point():
                    v = v.to(self.model.dtype)
            moved[k] = v
        return moved


def _architecture(model: str) -> str:
    config = Path(model, "config.json")
    if not config.exists():
        from transformers import AutoConfig

        return str((AutoConfig.from_pretrained(model).architectures or [""])[0])
    return str((json.loads(config.read_text()).get("architectures") or [""])[0])


@dataclass
class Rewriter:
    """An optional text-generation model that rewrites captions as an instruction asks."""

    model: Any
    tokenizer: Any
    device: str

    @classmethod
    def load(cls, cfg: CaptionConfig) -> Rewriter:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        assert cfg.rewrite_model is not None
        device, dtype = _device_dtype(cfg)
        kw = {"trust_remote_code": cfg.trust_remote_code}
        auto: Any = AutoModelForCausalLM
        model = auto.from_pretrained(cfg.rewrite_model, dtype=dtype, **kw)
        tokenizer = AutoTokenizer.from_pretrained(cfg.rewrite_model, **kw)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return cls(model.to(device).eval(), tokenizer, device)

    def rewrite(self, texts: list[str], instruction: str, max_new_tokens: int) -> list[str]:
        import torch

        if getattr(self.tokenizer, "chat_template", None):
            prompts = [
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": f"{instruction}\n\n{t}"}],
                    add_generation_prompt=True,
                    tokenize=False,
                )
                for t in texts
            ]
        else:
            prompts = [f"{instruction}\n\n{t}\n\n" for t in texts]
        inputs = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1
            )
        new = out[:, inputs["input_ids"].shape[1] :]
        return [
            " ".join(t.split()) for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)
        ]


def get_captioner(cfg: CaptionConfig) -> Captioner:
    """This process's captioner for cfg (loaded on first use, then reused)."""
    assert cfg.model is not None
    key = f"{cfg.model}|{cfg.kind}|{cfg.device}|{cfg.dtype}"
    return caption_models().get(key, lambda: Captioner.load(cfg))


def get_rewriter(cfg: CaptionConfig) -> Rewriter:
    assert cfg.rewrite_model is not None
    key = f"rewrite:{cfg.rewrite_model}|{cfg.device}|{cfg.dtype}"
    return caption_models().get(key, lambda: Rewriter.load(cfg))


class TransformersBackend(CaptionBackend):
    """The caption model inside this process (a Dask worker keeps it between tasks): one
    model call per prompt over the whole batch of images."""

    uses_gpu = True

    def __init__(self, cfg: CaptionConfig) -> None:
        self.cfg = cfg

    @classmethod
    def get(cls, cfg: CaptionConfig, share: int = 1) -> TransformersBackend:
        return cls(cfg)

    def generate(
        self, images: Sequence[Any], prompts: Mapping[str, PromptSpec]
    ) -> dict[str, list[Generated]]:
        captioner = get_captioner(self.cfg)
        model = str(self.cfg.model)
        return {
            kind: [Generated(t, model) for t in captioner.generate(list(images), p)]
            for kind, p in prompts.items()
        }
