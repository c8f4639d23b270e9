"""The caption stage's configuration: prompts, backend (in-process model or servers), batching.

Part of the build configuration (`sarlo_dask.config`, the `captions:` section of its YAML).
"""

from __future__ import annotations

import functools
import os

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sarlo_dask import lineage
from sarlo_dask.lineage import execution
from sarlo_dask.store import canonical

BACKENDS = {
    "transformers": "sarlo_dask.captions.backend:TransformersBackend",
    "openai": "sarlo_dask.captions.openai_server:OpenAIBackend",
}
"""captions.backend -> the class that implements it (module:Class): the built-in ones; an
installed package adds its own in the entry point group BACKEND_GROUP"""
BACKEND_GROUP = "sarlo_dask.caption_backends"


@functools.cache
def backend_names() -> dict[str, str]:
    """Every caption backend this process knows: name -> module:Class (an installed package
    does not replace a built-in one); entry points read once per process."""
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group=BACKEND_GROUP)}
    return {**found, **BACKENDS}


STYLE = "Do not use color terms in the text description. Avoid hypothesis or vague wording."


class PromptSpec(BaseModel):
    """One caption length: the instruction for chat VLMs, a text prefix for captioners
    (BLIP's conditional text; empty for none) and the generation limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    prefix: str = ""
    max_new_tokens: int = Field(64, ge=1)
    min_new_tokens: int = Field(0, ge=0)


def _default_prompts() -> dict[str, PromptSpec]:
    return {
        "SHORT": PromptSpec(
            text="Describe the key structural features of the satellite image in a few words. "
            + STYLE,
            max_new_tokens=32,
        ),
        "MID": PromptSpec(
            text="Describe the satellite image in one or two sentences: the main land cover, "
            "structures and their layout. " + STYLE,
            max_new_tokens=64,
        ),
        "LONG": PromptSpec(
            text="Describe the satellite image in detail: land cover, buildings, roads, water, "
            "vegetation and how they are arranged. " + STYLE,
            max_new_tokens=128,
        ),
    }


class CaptionConfig(BaseModel):
    """The caption stage: which model, on what, with which prompts; None model: no captions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(
        None,
        description="local folder or hub id of the caption model (backend openai: the served "
        "model's name)",
    )
    backend: str = Field(
        "transformers",
        description="transformers: the model in the Dask workers; openai: OpenAI-compatible "
        "servers (vLLM, SGLang, LMDeploy, TGI, transformers serve); or an installed one "
        "(entry point group sarlo_dask.caption_backends)",
    )
    servers: tuple[str, ...] = execution(
        (), description="backend openai: base URLs of the servers, e.g. http://node1:8000/v1"
    )
    api_key_env: str | None = execution(
        None, description="backend openai: environment variable holding the API key (never stored)"
    )
    image_format: str = Field(
        "png", pattern="^(png|jpeg)$", description="backend openai: the image's data-URL format"
    )
    image_size: int | None = Field(
        None, ge=16, description="backend openai: longest side sent, in pixels (None: as is)"
    )
    seed: int = Field(0, description="backend openai: the sampling seed sent (temperature is 0)")
    concurrency: int = execution(
        8, ge=1, description="backend openai: requests in flight per server, the whole build"
    )
    request_timeout: float = execution(
        120.0, gt=0, description="backend openai: seconds per request"
    )
    request_retries: int = execution(
        4,
        ge=0,
        description="backend openai: retries of a failed request (429 and Retry-After honoured)",
    )
    kind: str = Field(
        "auto",
        pattern="^(auto|chat|captioner)$",
        description="auto: chat when the processor has a chat template",
    )
    image: str = Field(
        "optical",
        pattern="^(optical|sar)$",
        description="caption the warped optical patch, or the SAR preview (builds without optical)",
    )
    device: str = Field(
        "auto",
        pattern="^(auto|cpu|cuda)$",
        description="where the model runs; shapes the captions (an auto dtype follows it, and "
        "GPU kernels round otherwise)",
    )
    dtype: str = Field(
        "auto",
        pattern="^(auto|float16|bfloat16|float32)$",
        description="auto: bf16 (else fp16) on GPU, fp32 on CPU",
    )
    batch_size: int = Field(
        8,
        ge=1,
        description="tiles per model call; shapes the captions (batched kernels round "
        "otherwise, and a nearly tied token can go the other way)",
    )
    max_in_flight: int = execution(
        0, ge=0, description="caption batches queued on the cluster at once; 0: 2 per worker"
    )
    retries: int = execution(2, ge=0, description="retries of a failed caption batch")
    prompts: dict[str, PromptSpec] = Field(default_factory=_default_prompts)
    rewrite_model: str | None = Field(
        None, description="optional text-generation model for an LLM cleanup pass"
    )
    rewrite_instruction: str = (
        "Rewrite this satellite image description without color terms and without "
        "speculative wording; keep every fact. Answer with the description only."
    )
    rewrite_max_new_tokens: int = Field(160, ge=1)
    trust_remote_code: bool = False

    @field_validator("model", "rewrite_model")
    @classmethod
    def _model_folder(cls, v: str | None) -> str | None:
        """A local model folder in one spelling (one digest); a hub id or a served name as is."""
        return canonical(v) if v and os.path.isdir(v) else v

    @field_validator("prompts")
    @classmethod
    def _three(cls, v: dict[str, PromptSpec]) -> dict[str, PromptSpec]:
        if set(v) != {"SHORT", "MID", "LONG"}:
            raise ValueError(f"prompts must be SHORT, MID and LONG, not {sorted(v)}")
        return v

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        if v not in (known := backend_names()):
            raise ValueError(f"no caption backend '{v}' (known: {', '.join(sorted(known))})")
        return v

    @model_validator(mode="after")
    def _servers(self) -> CaptionConfig:
        if self.backend == "openai" and self.model and not self.servers:
            raise ValueError("captions.backend openai needs captions.servers (base URLs)")
        bad = [u for u in self.servers if not u.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"captions.servers must be http(s) URLs, not {bad}")
        return self

    def digest(self) -> str:
        """Of the settings that shape the captions (lineage): not where they are computed
        (servers, key), nor how many requests or batches are queued, timed or retried; nor
        the settings of the backend not in use."""
        if self.backend == "transformers":
            unused = {"backend", "image_format", "image_size", "seed"}
        else:  # the model runs in the servers: how it is loaded here shapes nothing
            unused = {"kind", "device", "dtype", "trust_remote_code"}
        return lineage.digest(lineage.of_role(self, "shaping", unused))
