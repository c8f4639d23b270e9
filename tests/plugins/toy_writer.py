"""A sample writer from outside sarlo-dask, as an installed package would ship it: `keylist`,
a tab-separated list of the release's samples (key, split, shard, caption) for a loader that
reads no parquet, and a count per split."""

from __future__ import annotations

import json

from sarlo_dask import ReleaseView, SampleWriter


class KeyList(SampleWriter):
    kind = "keylist"

    def files(self, release: ReleaseView) -> dict[str, bytes]:
        lines = ["key\tsplit\tshard\tcaption"]
        for r in sorted(release.rows, key=lambda r: r["key"]):
            caption = r["caption_short"] or ""
            lines.append(f"{r['key']}\t{r['split']}\t{r['shard']}\t{caption}")
        counts: dict[str, int] = {}
        for r in release.rows:
            counts[r["split"]] = counts.get(r["split"], 0) + 1
        return {
            "keylist/samples.tsv": ("\n".join(lines) + "\n").encode(),
            "keylist/counts.json": json.dumps(counts, sort_keys=True).encode(),
        }
