"""A local folder of XYZ tiles as an optical source."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sarlo_dask.optical.source import Tile, TileResult, XYZSource
from sarlo_dask.store import canonical


@dataclass(frozen=True)
class FolderTiles(XYZSource):
    """A local folder of XYZ tiles: {root}/{z}/{x}/{y}.png (or .jpg, .jpeg, .webp)."""

    kind = "folder"
    root: str
    zoom: int = 19

    @classmethod
    def parse(cls, spec: str, zoom: int, **options: Any) -> FolderTiles | None:
        """`folder:PATH` (what meta.json records) or a folder's path."""
        folder = spec.removeprefix("folder:")
        if folder and "://" not in folder and Path(folder).is_dir():
            return cls(folder, zoom=zoom)
        if spec.startswith("folder:"):
            raise ValueError(f"optical source {spec!r}: no folder {folder!r} here")
        return None

    def describe(self) -> str:
        """`folder:PATH`, absolute: it resolves from any folder (reconstruction)."""
        return f"folder:{canonical(self.root)}"

    def spec(self) -> str:
        return f"folder:{self.root}"

    def check(self) -> str:
        return "" if any(os.scandir(self.root)) else "the folder holds no XYZ tiles"

    def zoom_levels(self) -> list[int]:
        return sorted(int(p.name) for p in Path(self.root).iterdir() if p.name.isdigit())

    def fetch(self, tiles: list[Tile]) -> dict[Tile, TileResult]:
        out: dict[Tile, TileResult] = {}
        for z, x, y in tiles:
            out[(z, x, y)] = None
            for ext in (".png", ".jpg", ".jpeg", ".webp"):
                p = Path(self.root, str(z), str(x), f"{y}{ext}")
                if p.exists():
                    out[(z, x, y)] = p.read_bytes()  # the mosaic reports undecodable files
                    break
        return out
