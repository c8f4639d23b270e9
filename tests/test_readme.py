"""The README's Python examples run as written against the demo's release (so the README
cannot drift from the code), and the loaders they show read every sample exactly."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .test_notebooks import readme_command

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("n", range(len(BLOCKS)))
def test_each_readme_example_runs(n, demo):
    """Run in the folder that holds `demo-out` (what `sarlo demo demo-out` made)."""
    out, run = demo
    assert run.returncode == 0, run.stderr
    res = subprocess.run(
        [sys.executable, "-c", BLOCKS[n]],
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert res.returncode == 0, f"README example {n}:\n{BLOCKS[n]}\n{res.stderr[-3000:]}"


def test_a_dataloader_with_two_workers_reads_every_sample_exactly(demo):
    import torch

    from sarlo_dask import dataset

    release = str(demo[0] / "release")
    for split in dataset.hf_data_files(release):
        plain = {s["__key__"]: s["sar.npy"] for s in dataset.open(release, split)}
        batches = dataset.open(release, split, batch_size=2)
        loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=2)
        got = {}
        for batch in loader:
            sar = np.asarray(batch["sar.npy"])
            assert sar.dtype == np.complex64 and len(batch["meta.json"]) == len(sar)
            got.update(zip(batch["__key__"], sar, strict=True))
        assert sorted(got) == sorted(plain), split
        assert all(np.array_equal(got[k], plain[k]) for k in plain)


# ---- the README's shell blocks ------------------------------------------------------------

SHELL = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
CI = Path(__file__).resolve().parents[1] / ".ci" / "run"


def shell_commands() -> list[str]:
    """Every command of the README's bash blocks: continuations joined, comments dropped,
    `a && b` split."""
    out = []
    for block in SHELL:
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            out += [" ".join(c.split()) for c in line.split("&&") if c.strip()]
    return out


SETUP = {
    "python3 -m venv .venv",
    ". .venv/bin/activate",
    "pip install torch==2.13.0",
    "python -m pytest -q",
}
"""the set-up and test steps: .ci/run runs them as the README says"""


def test_the_quickstart_is_what_ci_and_the_demo_fixture_run():
    """The Quickstart's two commands: the test command is .ci/run's, word for word; the demo
    command ends in what the `demo` fixture runs; every other shell command is run below."""
    quick = [" ".join(line.split()) for line in SHELL[1].strip().splitlines()]
    assert len(quick) == 2
    assert quick[1] in " ".join(CI.read_text().split())
    assert quick[0].endswith("&& sarlo demo demo-out") and DEMO == ["sarlo", "demo", "demo-out"]
    extras = re.findall(r"pip install -e '?\.\[(\w+)\]'?", " ".join(shell_commands()))
    import tomllib

    declared = tomllib.loads((README.parent / "pyproject.toml").read_text())["project"]
    assert set(extras) <= set(declared["optional-dependencies"]), extras
    for cmd in shell_commands():
        known = cmd in SETUP or cmd.startswith("pip install -e ") or cmd in RUNS
        known = known or cmd == readme_command()  # tests/test_notebooks.py runs it
        assert known or cmd == "sarlo demo demo-out", f"a README command no test runs: {cmd}"


DEMO = ["sarlo", "demo", "demo-out"]


def test_each_readme_yaml_block_is_a_valid_configuration():
    import yaml

    from sarlo_dask.config import SECTIONS

    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)
    assert blocks
    for block in blocks:
        for section, values in yaml.safe_load(block).items():
            SECTIONS[section](**values)  # pydantic: unknown or bad settings raise


RUNS = {
    "sarlo build s3://umbra-open-data-catalog/sar-data/tasks/.../*.nitf --work s3://my-bucket/work "
    "--out s3://my-bucket/sarlo --optical 'https://tiles.example.com/{z}/{x}/{y}.jpg' "
    "--caption-model /models/Qwen2-VL-2B-Instruct --cluster local": "build",
    "sarlo standardize scenes/ s3://bucket/more/*.nitf --work s3://bucket/work": "standardize",
    "sarlo tiles --work WORK --optical 'https://tiles.example/{z}/{x}/{y}.png' --zoom 19": "tiles",
    "sarlo optical reconstruct WORK/tiles/SCENE/KEY.meta.json --source SAME_SOURCE": "rebuild",
    "sarlo tiles --work work/ --optical tiles/ --caption-model /models/Qwen2-VL-2B-Instruct": (
        "captions"
    ),
    "sarlo build scenes/ --work work/ --out release/ --optical tiles/ --caption-server "
    "http://gpu-node-1:8000/v1 --caption-server http://gpu-node-2:8000/v1 --caption-model "
    "Qwen/Qwen2-VL-2B-Instruct": "servers",
    "sarlo standardize scenes/ --work work --dem dem/glo30/": "dem",
    "sarlo serve /models/Qwen2-VL-2B-Instruct --host 0.0.0.0 --port 8000 --max-batch 16": "serve",
}
"""each `sarlo` command of the README, by the name of the case that runs it"""


@pytest.fixture(scope="module")
def places(demo, tmp_path_factory, s3_server):
    """What the README's placeholders stand for here: the demo's scenes on moto's S3 and in a
    folder, a copy of its work, its optical ground from a loopback XYZ server, a tiny model."""
    import json
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    import s3fs

    from sarlo_dask.captions import tiny
    from sarlo_dask.sim.scene import SimulationSpec, simulate_scene

    from .tileserver import TileServer

    out = demo[0]
    root = tmp_path_factory.mktemp("readme")
    demo_small = sorted((out / "inputs").glob("*.nitf"))[-1]  # the demo's 1.2 m scene
    # the scene the commands read: one 1024 px tile at 0.8 m inside that one's footprint
    # (the same centre), so that the demo's optical ground and the zoom-19 folder cover it
    spec = json.loads(Path(f"{demo_small}.truth.json").read_text())["spec"]
    small = root / "inputs" / "sim_small.nitf"
    simulate_scene(
        small,
        SimulationSpec(
            rows=704,
            cols=704,
            row_spacing=1.2,
            col_spacing=1.2,
            seed=spec["seed"],
            lat=spec["lat"],
            lon=spec["lon"],
            collect_start=spec["collect_start"],
        ),
    )
    fs = s3fs.S3FileSystem(key="testing", secret="testing")
    for bucket in ("umbra-open-data-catalog", "my-bucket", "bucket"):
        fs.mkdir(bucket)
    fs.put(str(small), "umbra-open-data-catalog/sar-data/tasks/demo/" + small.name)
    fs.put(str(small), "bucket/more/" + small.name)
    (root / "scenes").mkdir()
    shutil.copy(small, root / "scenes" / "local_scene.nitf")  # another scene id than S3's
    markers = []
    for truth in [*sorted((out / "inputs").glob("*.truth.json")), Path(f"{small}.truth.json")]:
        markers += [(t["llh"][0], t["llh"][1]) for t in json.loads(truth.read_text())["targets"]]
    server = TileServer(markers)
    tile = sorted((out / "work" / "tiles").glob("*/*.meta.json"))[0]
    # an XYZ folder at the default zoom (19) over the scene the commands read
    from sarlo_dask.geometry.sicd import read_sicd_meta
    from sarlo_dask.sim.optical import simulate_optical_tiles

    corners = read_sicd_meta(str(demo_small)).GeoData.ImageCorners.get_array(dtype="float64")
    truth = json.loads(Path(f"{demo_small}.truth.json").read_text())
    vlm = tiny.build_llava(root / "llava")
    with ThreadPoolExecutor(1) as pool:  # the server starts on one core, the tiles on the other
        starting = pool.submit(tiny.serve, vlm, root / "serve.log")
        simulate_optical_tiles(root / "tiles19", truth, 19, 4e-4, latlon=corners)
        proc, served = starting.result()
    yield {
        "root": root,
        "demo": out,
        "tile": tile,
        "server": server,
        "model": tiny.build_vision_encoder_decoder(root / "model"),
        "optical19": root / "tiles19",
        "vlm": vlm,
        "served": served,
        "small_id": demo_small.stem,
    }
    server.close()
    proc.terminate()
    proc.wait(30)


def _run(cmd: str, swaps: dict[str, str], cwd: Path, timeout: float = 600):
    for old, new in swaps.items():
        assert old in cmd, (old, cmd)
        cmd = cmd.replace(old, new)
    argv = [str(Path(sys.executable).parent / "sarlo"), *shlex.split(cmd)[1:]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env |= {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert res.returncode == 0, f"{cmd}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res


def _serve_once(cmd: str, vlm: str) -> None:
    """The README's `sarlo serve` on a loopback port (not every address, as a test): it
    lists the model and answers one caption request for a tile-sized image."""
    import time

    import numpy as np
    import requests
    from PIL import Image

    from sarlo_dask.captions.openai_server import data_url, request_body
    from sarlo_dask.config import CaptionConfig

    from .helpers import free_port

    port = free_port()
    swaps = {"/models/Qwen2-VL-2B-Instruct": vlm, "0.0.0.0": "127.0.0.1", "8000": str(port)}
    for old, new in swaps.items():
        assert old in cmd, (old, cmd)
        cmd = cmd.replace(old, new)
    argv = [str(Path(sys.executable).parent / "sarlo"), *shlex.split(cmd)[1:]]
    proc = subprocess.Popen(argv, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                listed = requests.get(f"{base}/models", timeout=5).json()
                break
            except requests.RequestException:
                assert proc.poll() is None and time.monotonic() < deadline, "no server"
                time.sleep(0.3)
        assert [m["id"] for m in listed["data"]] == [vlm]
        cfg = CaptionConfig(model=vlm, backend="openai", servers=(base,))
        image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), "u1"))
        body = request_body(cfg, data_url(image), cfg.prompts["SHORT"])
        answer = requests.post(f"{base}/chat/completions", json=body, timeout=120)
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
    finally:
        proc.terminate()
        proc.wait(60)


def _other_scenes(keep: str):
    """copytree's ignore: every scene's entries in a {work} folder but `keep`'s."""

    def ignore(folder: str, names: list[str]) -> list[str]:
        scenes = {"scenes", "tiles", "captions"}
        if Path(folder).name not in scenes:
            return []
        return [n for n in names if n.split(".")[0] != keep]

    return ignore


@pytest.mark.parametrize("case", sorted(set(RUNS.values())))
def test_each_readme_command_runs(case, places, s3_server):
    """Each README command as written, its placeholders swapped for what they stand for here."""
    import shutil

    import s3fs

    cmd = next(c for c, name in RUNS.items() if name == case)
    root, demo_out = places["root"] / case, places["demo"]
    root.mkdir()
    server = places["server"].url
    fs = s3fs.S3FileSystem(key="testing", secret="testing", use_listings_cache=False)
    if case == "build":
        _run(
            cmd,
            {
                "tasks/.../*.nitf": "tasks/demo/*.nitf",
                "'https://tiles.example.com/{z}/{x}/{y}.jpg'": server,
                "/models/Qwen2-VL-2B-Instruct": places["model"],
            },
            root,
        )
        manifest = json.loads(fs.cat_file("my-bucket/sarlo/manifest.json"))
        assert manifest["complete"] and manifest["samples"] > 0
        assert manifest["captions"]["without"] == 0  # every sample captioned
    elif case == "servers":
        shutil.copytree(places["root"] / "scenes", root / "scenes")
        swaps = {
            "tiles/": str(places["optical19"]),
            "http://gpu-node-1:8000/v1": places["served"],
            "http://gpu-node-2:8000/v1": places["served"],
            "Qwen/Qwen2-VL-2B-Instruct": places["vlm"],
        }
        _run(cmd, swaps, root)
        manifest = json.loads((root / "release" / "manifest.json").read_text())
        assert manifest["complete"] and manifest["samples"] > 0
        assert manifest["captions"]["without"] == 0  # every sample captioned by the server
    elif case == "standardize":
        shutil.copytree(places["root"] / "scenes", root / "scenes")
        _run(cmd, {}, root)
        assert len(fs.glob("bucket/work/scenes/*/zarr.json")) == 2
    elif case == "serve":  # a server runs until stopped: started, asked once, stopped
        _serve_once(cmd, places["vlm"])
    elif case == "dem":  # a scene with 80 m of relief and its DEM in a folder of one tile
        from sarlo_dask.sim.scene import SimulationSpec, simulate_scene
        from sarlo_dask.stages.standardize import open_scene_store

        spec = SimulationSpec(rows=1040, cols=1040, row_spacing=0.8, col_spacing=0.8, relief_m=80)
        simulate_scene(root / "scenes" / "hilly.nitf", spec)
        (root / "dem" / "glo30").mkdir(parents=True)
        (root / "scenes" / "hilly.nitf.dem.tif").rename(root / "dem" / "glo30" / "tile.tif")
        _run(cmd, {}, root)
        ds = open_scene_store(str(root / "work" / "scenes" / "hilly.zarr"))
        assert ds.attrs["geolocation_height"] == f"DEM {root / 'dem' / 'glo30'}"
        assert "terrain_flags" in ds and float(ds.hae.max() - ds.hae.min()) > 60
    else:
        work = root / "work"
        tile = work / places["tile"].relative_to(demo_out / "work")
        # the demo's work with one scene: the one whose tile the case checks (its captions:
        # the one the zoom-19 folder covers); the others would only cost the server's time
        keep = places["small_id"] if case == "captions" else tile.parent.name
        shutil.copytree(demo_out / "work", work, ignore=_other_scenes(keep))
        if case == "tiles":
            _run(cmd, {"WORK": str(work), "'https://tiles.example/{z}/{x}/{y}.png'": server}, root)
            meta = json.loads(tile.read_text())
            assert meta["optical"]["status"] == "ok" and meta["optical"]["zoom"] == 19
        elif case == "rebuild":
            meta = json.loads(tile.read_text())
            swaps = {
                "WORK/tiles/SCENE/KEY.meta.json": str(tile),
                "SAME_SOURCE": str(demo_out / "optical"),
            }
            _run(cmd, swaps, root)
            base = str(tile).removesuffix(".meta.json")
            rebuilt = Path(f"{base}.optic.rebuilt.png").read_bytes()
            assert rebuilt == Path(f"{base}.optic.png").read_bytes(), meta["key"]
        else:  # captions
            swaps = {
                "tiles/": str(places["optical19"]),
                "/models/Qwen2-VL-2B-Instruct": places["model"],
            }
            _run(cmd, swaps, root)
            records = [json.loads(p.read_text()) for p in (work / "captions").glob("*/*.json")]
            assert len(records) == len(list((work / "tiles").glob("*/*.meta.json"))) > 0
            # the scene the zoom-19 folder covers has every tile captioned
            small = places["small_id"]
            ours = [r for r in records if r["scene_id"] == small]
            assert ours and all(r["caption"] for r in ours), [r["reason"] for r in ours]


def test_hugging_face_datasets_gets_every_member_of_a_sample(demo):
    """The README's `datasets` snippet: each sample comes with every member the shard holds
    (the demo ships optic.png), the images decoded, the rest as bytes or dicts."""
    datasets = pytest.importorskip("datasets")
    from sarlo_dask import dataset

    release = str(demo[0] / "release")
    features = dataset.hf_features(release)
    for split, files in dataset.hf_data_files(release).items():
        hf = datasets.load_dataset(
            "webdataset",
            data_files={split: files},
            split=split,
            streaming=True,
            features=features,
        )
        ours = {s["__key__"]: s for s in dataset.open(release, split, decode=False)}
        for sample in hf:
            members = set(ours[sample["__key__"]]) - {"__key__", "__url__"}
            assert "optic.png" in members
            got = {k for k, v in sample.items() if v is not None} - {"__key__", "__url__"}
            assert got == members, (sample["__key__"], got ^ members)
            assert sample["optic.png"].size == (1024, 1024)
