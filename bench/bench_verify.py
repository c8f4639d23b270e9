"""Verification's speed and cost: `sarlo verify` against `sha256sum` over the same shards
(target >= 0.8x its speed), and what checking the committed shards' sha256 adds to an
unchanged re-run of `sarlo build` (target <= 10 % of that re-run).

    python bench/bench_verify.py [--scenes 4] [--size 6144] [--reps 3]

Inputs: bench_build's simulated 0.4 m scenes and optical ground, built once with `sarlo
build` (1024 px tiles, 4 samples a shard). Each timing is the median of --reps, the two
sides interleaved, the page cache warm for both (as on a re-run or a verify right after a
build); `sarlo verify` is also timed without its start (`sarlo --version`: Python and the
package's imports), and `verify_release` in this process. An unchanged re-run is timed
twice: as it runs (release.check_committed: sha256, every committed shard read and hashed)
and with release.check_committed: size; the difference is what the sha256 check costs. The
serial time to hash every shard in one thread is printed beside it, as an upper bound that
does not depend on timing noise.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from common import record  # noqa: E402


def sarlo(*args: str) -> float:
    """Run a `sarlo` command; its wall time (it must exit 0)."""
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "sarlo_dask.cli", *args], capture_output=True)
    seconds = time.perf_counter() - t0
    assert run.returncode == 0, run.stdout.decode() + run.stderr.decode()
    return seconds


def main() -> None:
    from bench_build import inputs

    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--size", type=int, default=6144)  # ~1 GB: the start is not the measure
    ap.add_argument("--zoom", type=int, default=18)
    ap.add_argument("--dir", default=".bench")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    root = Path(args.dir)
    root.mkdir(exist_ok=True)
    urls, optical = inputs(root, args.scenes, args.size, args.zoom)
    work, out = root / "verify_work", root / "verify_out"
    configs = {}
    for check in ("sha256", "size"):
        configs[check] = root / f"verify_{check}.yaml"
        settings = {
            "tiles": {"optical": optical, "zoom": args.zoom},
            "release": {"samples_per_shard": 4, "check_committed": check},
        }
        configs[check].write_text(yaml.safe_dump(settings))

    def build(check: str) -> float:
        cmd = ["build", *urls, "--work", str(work), "--out", str(out)]
        return sarlo(*cmd, "--config", str(configs[check]), "--workers", "2")

    print(f"first build: {build('sha256'):.1f} s", flush=True)
    shards = sorted(str(p) for p in out.glob("gen-*/*/chunk_*/*.tar"))
    size = sum(os.path.getsize(p) for p in shards)
    times: dict[str, list[float]] = {
        "verify": [],
        "start": [],
        "sha256sum": [],
        "sha256": [],
        "size": [],
    }
    inproc: list[float] = []
    from sarlo_dask.release.verify import verify_release
    from sarlo_dask.store import Store

    for _ in range(args.reps):  # interleaved: the shared machine's slow spells hit both
        t0 = time.perf_counter()
        subprocess.run(["sha256sum", *shards], check=True, capture_output=True)
        times["sha256sum"].append(time.perf_counter() - t0)
        times["verify"].append(sarlo("verify", str(out)))
        times["start"].append(sarlo("--version"))  # the interpreter and the package's import
        t0 = time.perf_counter()
        report = verify_release(Store.of(str(out)))
        inproc.append(time.perf_counter() - t0)
        assert not report.problems, report.problems
        for check in ("sha256", "size"):
            times[check].append(build(check))
    t0 = time.perf_counter()
    for p in shards:
        with open(p, "rb") as f:
            hashlib.file_digest(f, "sha256")
    serial = time.perf_counter() - t0
    med = {k: statistics.median(v) for k, v in times.items()}
    mb = size / 1e6
    print(f"{len(shards)} shards, {mb:.0f} MB, {os.cpu_count()} cores; medians of {args.reps}:")
    print(f"sha256sum:              {med['sha256sum']:6.2f} s  {mb / med['sha256sum']:7.0f} MB/s")
    print(
        f"sarlo verify (command): {med['verify']:6.2f} s  {mb / med['verify']:7.0f} MB/s  "
        f"-> {med['sha256sum'] / med['verify']:.2f}x sha256sum's speed (target >= 0.8x)"
    )
    rest = med["verify"] - med["start"]
    print(
        f"  of which starting Python and importing sarlo_dask (`sarlo --version`): "
        f"{med['start']:.2f} s; the rest, {rest:.2f} s -> {med['sha256sum'] / rest:.2f}x"
    )
    t_in = statistics.median(inproc)
    print(
        f"verify_release (in process, no interpreter start): {t_in:.2f} s -> "
        f"{med['sha256sum'] / t_in:.2f}x"
    )
    cost = max(0.0, med["sha256"] - med["size"])
    print(
        f"unchanged re-run: {med['sha256']:.1f} s checking sha256, {med['size']:.1f} s "
        f"checking sizes only: the sha256 check costs {cost:.2f} s = "
        f"{100 * cost / med['sha256']:.1f} % of the re-run (target <= 10 %)"
    )
    print(
        f"  bound: hashing every shard in one thread takes {serial:.2f} s = "
        f"{100 * serial / med['sha256']:.1f} % of the re-run"
    )
    record(
        "verify",
        {
            "shards": len(shards),
            "megabytes": round(mb),
            "sha256sum_s": round(med["sha256sum"], 2),
            "verify_command_s": round(med["verify"], 2),
            "verify_vs_sha256sum": round(med["sha256sum"] / med["verify"], 2),
            "python_start_s": round(med["start"], 2),
            "verify_in_process_vs_sha256sum": round(med["sha256sum"] / t_in, 2),
            "rerun_sha256_s": round(med["sha256"], 1),
            "rerun_size_s": round(med["size"], 1),
            "sha256_check_s": round(cost, 2),
            "sha256_check_percent": round(100 * cost / med["sha256"], 1),
            "serial_hash_percent": round(100 * serial / med["sha256"], 1),
        },
        {"scenes": args.scenes, "size": args.size, "zoom": args.zoom, "reps": args.reps},
    )


if __name__ == "__main__":
    main()
