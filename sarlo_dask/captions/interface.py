"""The caption backend interface: images and the three prompts in, one typed result per image
and prompt out. A backend is one module: `transformers` (the model inside the Dask workers,
sarlo_dask.captions.backend) and `openai` (OpenAI-compatible inference servers,
sarlo_dask.captions.openai_server); a third (say vLLM's offline engine in a process of its
own) is a subclass of `CaptionBackend` that an installed package declares in the
`sarlo_dask.caption_backends` entry point group (sarlo_dask.caption_config.backend_names).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from sarlo_dask.caption_config import BACKEND_GROUP, backend_names
from sarlo_dask.config import CaptionConfig, PromptSpec


@dataclass(frozen=True)
class Generated:
    """One image's text for one prompt, or why there is none (nothing is made up)."""

    text: str | None
    model: str
    """the id of the model that made it (a server's own answer for server backends)"""
    reason: str | None = None
    transient: bool = False
    """the failure may pass (a server down, overloaded, slow): a re-run asks again"""


class CaptionBackend(ABC):
    """Turns images into text, once per process (set up on first use, then reused)."""

    uses_gpu: ClassVar[bool]
    """whether a caption task needs a GPU of the worker it runs on (servers hold theirs)"""
    remote: ClassVar[bool] = False
    """whether `generate` waits on other machines (inference servers) rather than computing:
    its task then leaves the worker's thread pool while it waits, so that the worker's
    scenes and tiles go on meanwhile (a build streams into a captioner of its own)"""

    @classmethod
    @abstractmethod
    def get(cls, cfg: CaptionConfig, share: int = 1) -> CaptionBackend:
        """This process's backend for cfg; `share`: how many processes send to the same
        servers at once (a server backend divides its per-server concurrency by it)."""

    @abstractmethod
    def generate(
        self, images: Sequence[Any], prompts: Mapping[str, PromptSpec]
    ) -> dict[str, list[Generated]]:
        """{prompt name: one Generated per image (PIL RGB), in order}; greedy decoding."""


def backend_class(cfg: CaptionConfig) -> type[CaptionBackend]:
    """The class of cfg.backend (its module imported only now: torch is heavy)."""
    from importlib.metadata import EntryPoint

    spec = backend_names()[cfg.backend]
    try:
        cls = EntryPoint(cfg.backend, spec, BACKEND_GROUP).load()
    except Exception as exc:  # an installed package that cannot be loaded: one line
        raise ValueError(
            f"caption backend {cfg.backend} = {spec}: cannot be loaded ({exc})"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, CaptionBackend)):
        raise ValueError(f"caption backend {cfg.backend} = {spec}: not a CaptionBackend class")
    return cls


def get_backend(cfg: CaptionConfig, share: int = 1) -> CaptionBackend:
    """This process's backend for cfg."""
    return backend_class(cfg).get(cfg, share)


def uses_gpu(cfg: CaptionConfig) -> bool:
    """Whether cfg's caption tasks should ask the cluster for a GPU."""
    return backend_class(cfg).uses_gpu
