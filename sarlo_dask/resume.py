"""What an earlier run left in {work}, and whether it may be reused.

Every unit records the digests of the settings that shaped it (a scene its standardize
settings; a tile its scene's and its own; a caption record its tile's and the caption
settings; a shard the plan, the release settings and every sample's). A unit made under
other settings is removed with everything made from it and made again, never reused.
"""

from __future__ import annotations

from typing import Any

from sarlo_dask.store import join, remove, tiles_marker_url
from sarlo_dask.tile_stage import tile_dir

STAGE_OF = {"scene_config": "standardize", "tile_config": "tiles", "caption_config": "captions"}


def stale_reason(made: dict[str, Any] | None, want: dict[str, Any]) -> str:
    """Which stages' settings differ between what a unit was made under and what is wanted."""
    changed = [STAGE_OF.get(k, k) for k in sorted(want) if (made or {}).get(k) != want[k]]
    return f"{' and '.join(changed) or 'no'} settings changed"


def remove_scene_tiles(work: str, scene_id: str, so: dict[str, Any] | None) -> None:
    """Remove a scene's tiles, their marker and their captions (all made from the scene)."""
    remove(tiles_marker_url(work, scene_id), so)
    remove(tile_dir(work, scene_id), so)
    remove(join(work, "captions", scene_id), so)
