"""A caption backend from outside sarlo-dask, as an installed package would ship it:
`brightness` describes each optical view by its mean brightness (a stand-in for a model a
package would wrap: vLLM's offline engine, a hosted API with its own client)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sarlo_dask import CaptionBackend, Generated
from sarlo_dask.config import CaptionConfig, PromptSpec

MODEL = "toy-brightness-1"


class Brightness(CaptionBackend):
    uses_gpu = False

    @classmethod
    def get(cls, cfg: CaptionConfig, share: int = 1) -> CaptionBackend:
        return cls()

    def generate(
        self, images: Sequence[Any], prompts: Mapping[str, PromptSpec]
    ) -> dict[str, list[Generated]]:
        levels = [int(np.asarray(im.convert("L")).mean()) for im in images]
        words = {"SHORT": "Ground", "MID": "Ground seen from above", "LONG": "Open ground"}
        return {
            name: [
                Generated(f"{words.get(name, 'Ground')} of mean brightness {v} of 255.", MODEL)
                for v in levels
            ]
            for name in prompts
        }
