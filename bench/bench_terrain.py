"""Scene stage with a DEM against the constant-height one, on a simulated scene with relief.

    python bench/bench_terrain.py [--size 4096] [--relief 80] [--dem-spacing 30] [--dir .bench]

Prints, from one run on 2 local worker processes: the scene stage geolocating on the DEM
(`dem_use: geolocation`: DEM window read, tie-point step searched on the DEM, layover and
shadow flags) and only checking with it (`dem_use: check`) against the same stage at a
constant height (target: the DEM at most 2x its time, i.e. a ratio >= 0.5x); the same as a user
runs it (`sarlo standardize`, with and without `--dem`, end to end); the tie-point step each
chose and the DEM tie points' error against dense DEM projection. The DEM is the simulator's,
sampled at --dem-spacing (30 m: Copernicus GLO-30's spacing; 2 m: the tests').
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from common import Measurement, measure, table  # noqa: E402


def scene(root: Path, size: int, relief: float, spacing: float) -> Path:
    from sarlo_dask.sim.scene import SimulationSpec, simulate_scene

    path = root / f"terrain_{size}_{relief:g}m_dem{spacing:g}.nitf"
    if not path.exists():
        print(f"simulating {path} ({size} x {size} at 0.3 m, {relief} m relief) ...", flush=True)
        spec = SimulationSpec(
            rows=size,
            cols=size,
            row_spacing=0.3,
            col_spacing=0.3,
            n_targets=4,
            relief_m=relief,
            dem_spacing_m=spacing,
        )
        simulate_scene(path, spec)
    return path


def cli(path: Path, work: Path, *extra: str) -> Measurement:
    shutil.rmtree(work, ignore_errors=True)
    sarlo = str(Path(sys.executable).parent / "sarlo")
    argv = [sarlo, "standardize", str(path), "--work", str(work), "--workers", "2", *extra]
    with measure(" ".join(argv[1:])) as m:
        subprocess.run(argv, check=True, capture_output=True)
    return m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--relief", type=float, default=80.0)
    ap.add_argument("--dem-spacing", type=float, default=30.0)
    ap.add_argument("--dir", default=".bench")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from distributed import Client, LocalCluster

    from sarlo_dask.config import StandardizeConfig
    from sarlo_dask.geometry.dem import scene_dem
    from sarlo_dask.geometry.geolocation import llh_to_ecf
    from sarlo_dask.geometry.sicd import read_sicd_meta
    from sarlo_dask.geometry.terrain import project_to_dem
    from sarlo_dask.geometry.tiles import tile_llh
    from sarlo_dask.pipeline import standardize_scenes
    from sarlo_dask.stages.standardize import open_scene_store

    root = Path(args.dir)
    root.mkdir(exist_ok=True)
    path = scene(root, args.size, args.relief, args.dem_spacing)
    dem = str(path) + ".dem.tif"
    print(f"scene {args.size} x {args.size} at 0.3 m, {os.cpu_count()} cores", flush=True)
    runs: dict[str, Measurement] = {}
    cfg0 = StandardizeConfig()
    stores = {}
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(read_sicd_meta, str(path))  # one-time imports outside the timings
        shutil.rmtree(root / "terrain_work_warm", ignore_errors=True)
        warm = standardize_scenes([str(path)], str(root / "terrain_work_warm"), cfg0, client)
        assert warm[0].status == "done", warm[0].reason  # the workers' first scene, untimed
        for name, cfg in (
            ("constant", StandardizeConfig()),
            ("dem", StandardizeConfig(dem=dem)),
            ("check", StandardizeConfig(dem=dem, dem_use="check")),
        ):
            work = root / f"terrain_work_{name}"
            shutil.rmtree(work, ignore_errors=True)
            with measure(name) as runs[name]:
                res = standardize_scenes([str(path)], str(work), cfg, client)[0]
            assert res.status == "done", res.reason
            stores[name] = open_scene_store(res.store)
    cli(path, root / "terrain_cli_warm")  # the page cache and imports, untimed
    end_const = cli(path, root / "terrain_cli_constant")
    end_dem = cli(path, root / "terrain_cli_dem", "--dem", dem)

    ds = stores["dem"]
    rng = np.random.default_rng(0)
    a = rng.uniform(0, ds.sizes["azimuth"] - 1, 5000)
    r = rng.uniform(0, ds.sizes["range"] - 1, 5000)
    xml = ds.attrs["sicd_xml"]
    dense = project_to_dem(xml, r, a, scene_dem(dem, xml), shadows=False).ecf
    tie = llh_to_ecf(tile_llh(ds.lat.load(), ds.lon.load(), ds.hae.load(), a, r))
    err = np.linalg.norm(tie - dense, axis=1).max()

    print()
    print(
        table(
            [
                ("scene stage: DEM vs constant height", runs["dem"], runs["constant"], ">= 0.5x"),
                ("scene stage: DEM check vs constant", runs["check"], runs["constant"], ">= 0.5x"),
                ("sarlo standardize --dem vs without", end_dem, end_const, ">= 0.5x"),
            ]
        )
    )
    for name, s in stores.items():
        print(
            f"{name:9s} tie-point step {s.attrs['tie_point_step']:4d} px, estimate "
            f"{s.attrs['geolocation_error_estimate_m'] * 1e3:8.3f} mm, "
            f"{s.sizes['tp_azimuth'] * s.sizes['tp_range']} tie points"
        )
    flags = stores["dem"].terrain_flags.values
    print(
        f"DEM tie points vs dense DEM projection at 5000 pixels: max {err * 1e3:.2f} mm "
        f"(bound {StandardizeConfig().dem_bound_m * 1e3:.0f} mm); relief "
        f"{float(ds.hae.max() - ds.hae.min()):.1f} m; layover {np.mean(flags & 1 > 0):.3f}, "
        f"shadow {np.mean(flags & 2 > 0):.3f} of the tie points"
    )


if __name__ == "__main__":
    main()
