"""Shared fixtures: simulated SICD scenes (sarpy-written), a 2-process Dask cluster, moto S3."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# no instance metadata service here: botocore would look for credentials at 169.254.169.254
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The network guard (tests/netguard): in this process, and through sitecustomize in every
# Python process the tests start; refusals are logged in SARLO_NETGUARD, read after each test.
NETGUARD_DIR = Path(__file__).resolve().parent / "netguard"
os.environ["SARLO_NETGUARD"] = tempfile.mkdtemp(prefix="sarlo-netguard-")
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(NETGUARD_DIR), os.environ.get("PYTHONPATH", "")) if p
)
sys.path.insert(0, str(NETGUARD_DIR))
# S3 in any test process goes to the suite's moto server (s3_server starts it on this port),
# never to a public endpoint, whichever process reads and whatever options it was given.
with socket.socket() as _probe:
    _probe.bind(("127.0.0.1", 0))
    S3_PORT = _probe.getsockname()[1]
os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{S3_PORT}"
import fsspec  # noqa: E402
import netguard  # noqa: E402

netguard.install()
fsspec.register_implementation("fullfs", "fullfs.FullFileSystem", clobber=True)

from sarlo_dask.sim.scene import SimulationSpec, simulate_scene  # noqa: E402

# The real corpus (SICD NITF files, SICD XML of real sensors) lives beside the repository, not
# in it: SARLO_TEST_DATA names it (default ../shared/data). Without it its tests skip, each
# with one line saying where it was looked for; with SARLO_REQUIRE_TEST_DATA=1 (CI) they run
# and a missing corpus fails them.
TEST_DATA = Path(
    os.environ.get("SARLO_TEST_DATA")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data"
).resolve()
REQUIRE_TEST_DATA = os.environ.get("SARLO_REQUIRE_TEST_DATA") == "1"
SHARED_SICD = TEST_DATA / "sicd"
SICD_XML = TEST_DATA / "sicd-xml"


def corpus_missing(folder: Path) -> str | None:
    """Why the tests of `folder` skip (None: they run, the folder is there or required)."""
    if folder.is_dir() or REQUIRE_TEST_DATA:
        return None
    return f"real corpus not found at {folder} (set SARLO_TEST_DATA to its folder)"


def corpus_params(paths: list[Path], folder: Path) -> list[Any]:
    """`paths` to parametrize over, or one skipped case saying why the corpus is missing."""
    why = corpus_missing(folder)
    return [pytest.param(None, marks=pytest.mark.skip(reason=why))] if why else list(paths)


def corpus_id(path: Path | None) -> str:
    return path.name if path is not None else "corpus"


needs_shared = pytest.mark.skipif(
    corpus_missing(SHARED_SICD) is not None, reason=corpus_missing(SHARED_SICD) or ""
)

SKEW_FINE = ((0.15, 4e-4),)
SKEW_COARSE = ((0.2, 1e-4),)  # the support wraps across the native Nyquist edge
CASES = {
    "fine": SimulationSpec(rows=1024, cols=1024, row_spacing=0.3, col_spacing=0.3, seed=1),
    "fine_skew": SimulationSpec(
        rows=1024,
        cols=1024,
        row_spacing=0.3,
        col_spacing=0.3,
        seed=2,
        col_deltakcoa=SKEW_FINE,
        collect_start="2025-06-02T10:00:00",
    ),
    "coarse": SimulationSpec(
        rows=512,
        cols=448,
        row_spacing=1.2,
        col_spacing=1.1,
        seed=3,
        collect_start="2025-06-03T10:00:00",
    ),
    "coarse_skew": SimulationSpec(
        rows=512,
        cols=448,
        row_spacing=1.2,
        col_spacing=1.1,
        seed=4,
        col_deltakcoa=SKEW_COARSE,
        collect_start="2025-06-04T10:00:00",
    ),
}


SIGINT_CHANGED: list[str] = []
"""tests after which the pytest process's Ctrl-C handler was no longer Python's (restored,
and named at the end): a process started later would inherit an ignored SIGINT"""


@pytest.fixture(autouse=True)
def sigint_kept(request):
    import signal

    yield
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        SIGINT_CHANGED.append(f"{request.node.nodeid}: {signal.getsignal(signal.SIGINT)!r}")
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def network_guard():
    """Fails the test during which any of the suite's processes reached past the loopback."""
    yield
    refused = netguard.take(os.environ["SARLO_NETGUARD"])
    if refused:
        lines = [f"{r['message']} ({' '.join(r['argv'])})" for r in refused]
        pytest.fail("left 127.0.0.1:\n" + "\n".join(lines[:10]), pytrace=False)


FAULTS: list[tuple[str, str, str, int]] = []


@pytest.fixture(scope="session")
def fault_table():
    """add(fault, expected, observed, samples_lost): a row of the table printed at the end."""

    def add(fault: str, expected: str, observed: str, lost: int) -> None:
        FAULTS.append((fault, expected, " ".join(observed.split())[:90], lost))

    return add


SLURM_JOBS: list[str] = []
"""what the SLURM tests saw: one line per job (tests/test_slurm.py)"""


DEMO_FILES = {"test_cli.py", "test_demo.py", "test_notebooks.py", "test_readme.py"}
"""the test files reading `sarlo demo`'s output (the `demo` fixture, a minute of work)"""


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks
def pytest_collection_modifyitems(config, items) -> None:
    """For pytest-xdist's `--dist loadgroup`: each test file is one group (its module
    fixtures are made once, on one worker), and the files reading the demo's output share
    one (the demo runs once). Without xdist the marks change nothing."""
    for item in items:
        group = "demo" if item.path.name in DEMO_FILES else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_terminal_summary(terminalreporter) -> None:
    if SIGINT_CHANGED:
        terminalreporter.section("SIGINT handler changed (restored)")
        for line in SIGINT_CHANGED:
            terminalreporter.write_line(line)
    if SLURM_JOBS:
        terminalreporter.section("SLURM jobs seen")
        for line in SLURM_JOBS:
            terminalreporter.write_line(line)
    if not FAULTS:
        return
    head = ("fault", "expected", "observed", "samples lost")
    rows = [head, *sorted((f, e, o, str(n)) for f, e, o, n in FAULTS)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    terminalreporter.section("fault injection")
    for i, row in enumerate(rows):
        terminalreporter.write_line(
            " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
        )
        if i == 0:
            terminalreporter.write_line("-+-".join("-" * w for w in widths))


@pytest.fixture(scope="session")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The four acceptance cases: 0.3 m and ~1.2 m, each plain and with a skewed spectrum."""
    root = tmp_path_factory.mktemp("scenes")
    out = {}
    for name, spec in CASES.items():
        path = root / f"{name}.nitf"
        simulate_scene(path, spec)
        out[name] = path
    return out


@pytest.fixture(scope="session")
def client():
    """A real LocalCluster with two worker processes."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 API server on 127.0.0.1 (the port of AWS_ENDPOINT_URL), recording requests."""
    from .s3server import RecordingMotoServer

    server = RecordingMotoServer(ip_address="127.0.0.1", port=S3_PORT, verbose=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server):
    """storage_options for a clean moto S3 with bucket `sarlo`."""
    import requests
    import s3fs

    requests.post(f"{s3_server.url}/moto-api/reset", timeout=10)
    s3_server.requests.clear()
    s3_server.sent.clear()
    s3fs.S3FileSystem.clear_instance_cache()
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": s3_server.url},
    }
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("sarlo")
    return options


RELEASE_SCENES = ("fine", "fine_skew", "coarse")


@pytest.fixture(scope="session")
def release_setup(scenes, tmp_path_factory):
    """Three scenes (three passes), their optical ground, a tiny caption model and one YAML
    config with every stage's section, for whole builds."""
    import json

    import yaml

    from sarlo_dask.captions import tiny
    from sarlo_dask.sim.optical import simulate_optical_tiles

    root = tmp_path_factory.mktemp("release")
    urls = [str(scenes[name]) for name in RELEASE_SCENES]
    for u in urls:
        truth = json.loads(Path(u + ".truth.json").read_text())
        simulate_optical_tiles(root / "optical", truth, zoom=18, margin_deg=0.004)
    model = tiny.build_vision_encoder_decoder(root / "model")
    config = root / "build.yaml"
    settings = {
        "standardize": {
            "min_size": 64,
            "chunk_azimuth": 256,
            "chunk_range": 256,
            "store_chunk": 128,
        },
        "tiles": {"size": 128, "stride": 128, "optical": str(root / "optical"), "zoom": 18},
        "captions": {"model": model, "batch_size": 4},
        "release": {
            "splits": {"train": 0.6, "validation": 0.2, "test": 0.2},
            "samples_per_shard": 4,
            "shards_per_chunk": 2,
        },
    }
    config.write_text(yaml.safe_dump(settings))
    return root, urls, config


@pytest.fixture(scope="session")
def release_built(release_setup, client):
    """The reference build of release_setup on the shared cluster: (out folder, Build)."""
    from sarlo_dask.pipeline import build_dataset

    from .helpers import build_configs

    root, urls, config = release_setup
    result = build_dataset(
        urls, str(root / "work"), str(root / "out"), build_configs(config), client
    )
    assert result.exit_code() == 0, result
    return root / "out", result


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """`sarlo demo` run once as a user runs it: (its output folder, the finished process)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("demo") / "demo-out"
    run = subprocess.run(  # the README's command, word for word (tests/test_readme.py)
        [str(Path(sys.executable).parent / "sarlo"), "demo", "demo-out"],
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return out, run


@pytest.fixture(scope="session")
def tiled(scenes, client, tmp_path_factory):
    """One scene standardized and cut into 128 px tiles with optical views."""
    import json

    from sarlo_dask.config import TileConfig
    from sarlo_dask.pipeline import standardize_scenes, tile_scenes
    from sarlo_dask.sim.optical import simulate_optical_tiles

    from .helpers import small_scene_config

    root = tmp_path_factory.mktemp("captions")
    work = str(root / "work")
    url = str(scenes["fine"])
    assert standardize_scenes([url], work, small_scene_config(), client)[0].status == "done"
    simulate_optical_tiles(
        root / "optical",
        json.loads(Path(url + ".truth.json").read_text()),
        zoom=18,
        margin_deg=0.004,
    )
    cfg = TileConfig(size=128, stride=64, optical=str(root / "optical"), zoom=18)
    (res,) = tile_scenes(work, cfg, client)
    assert res.kept >= 16 and not res.optical_failed
    return root, work, cfg, res


@dataclass
class FullDisk:
    """A small disk for {work}: `path` to look at and fill locally, `url` for the build;
    `size(n)` gives it n bytes, `make_room()` gives it space again."""

    kind: str
    path: Path
    url: str
    mounted: bool = False

    def size(self, n: int) -> None:
        if self.kind == "fsspec":
            (self.path / ".fullfs-quota").write_text(str(n))
            return
        mount = ["mount", "-t", "tmpfs", "-o", f"size={n}", "tmpfs", str(self.path)]
        run = subprocess.run(mount, capture_output=True)
        if run.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {run.stderr.decode().strip()}")
        self.mounted = True

    def make_room(self) -> None:
        if self.kind == "tmpfs":
            subprocess.run(["mount", "-o", "remount,size=2g", str(self.path)], check=True)
        else:
            (self.path / ".fullfs-quota").unlink()


@pytest.fixture(params=["tmpfs", "fsspec"])
def full_disk(request, tmp_path) -> Iterator[FullDisk]:
    """A small disk: a real tmpfs where the tests run as root (mounting needs it; skipped
    elsewhere), and everywhere an fsspec file system raising ENOSPC as a full disk does
    (tests/netguard/fullfs.py), which the build writes through as it does an object store."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    disk = FullDisk(request.param, mnt, str(mnt) if request.param == "tmpfs" else f"fullfs://{mnt}")
    yield disk
    if disk.mounted:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
