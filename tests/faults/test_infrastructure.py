"""Infrastructure faults during real builds: workers killed in each stage, the S3 server
going away and coming back, {work} on a full filesystem."""

from __future__ import annotations

import time

from sarlo_dask.pipeline import build_dataset

from ..helpers import build_configs, build_meanwhile, kill_worker, lost_samples, tree, worker_pids


def test_workers_killed_in_standardize_tiles_and_release(
    release_setup, release_built, tmp_path, fault_table
):
    from distributed import Client, LocalCluster

    _, urls, config = release_setup
    out_ref, _ = release_built
    work, out = tmp_path / "work", tmp_path / "out"
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        killed: list[int] = []
        steps = [
            ("scenes/*.zarr/slc/c/*/*", lambda: killed.append(kill_worker(client))),
            ("tiles/*/*.meta.json", lambda: killed.append(kill_worker(client))),
            (
                lambda: any(out.glob("gen-*/*/chunk_*/shard-*")),
                lambda: killed.append(kill_worker(client)),
            ),
        ]
        result = build_meanwhile(client, urls, work, out, config, steps, 300)
        alive = worker_pids(client)
    got, ref = tree(out), tree(out_ref)
    fault_table(
        "worker SIGKILLed in standardize, tiles, release",
        "exit 0, same bytes",
        f"{len(set(killed) - alive)} workers died; exit {result.exit_code()}, "
        f"output identical: {got == ref}",
        lost_samples(got, ref),
    )
    assert len(killed) == 3 and not set(killed) & alive  # each victim died, was replaced
    assert result.exit_code() == 0, result.failures()
    assert got == ref


def test_s3_server_restarted_mid_build(release_setup, release_built, client, fault_table):
    """The S3 endpoint goes away for a few seconds while tiles are written; the build ends
    (what failed is reported, nothing half-written is kept) and a re-run completes it."""
    import s3fs
    from moto.server import ThreadedMotoServer

    _, urls, config = release_setup
    out_ref, _ = release_built
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    so = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": f"http://{host}:{port}"}}
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(**so)
    fs.mkdir("restart")
    work, out = "s3://restart/work", "s3://restart/out"
    down = []

    def tiles_written() -> bool:
        fs.invalidate_cache()
        time.sleep(0.2)
        return bool(fs.glob("restart/work/tiles/*/*.meta.json"))

    def restart() -> None:
        nonlocal server
        server.stop()
        down.append(time.monotonic())
        time.sleep(3)
        # moto keeps its buckets in this process: a new server on the port sees them again
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()

    try:
        first = build_meanwhile(
            client, urls, work, out, config, [(tiles_written, restart)], 300, so
        )
        final = first
        if first.exit_code() != 0:
            final = build_dataset(urls, work, out, build_configs(config, so), client)
        fs.invalidate_cache()
        got = {p[len("restart/out/") :]: fs.cat_file(p) for p in fs.find("restart/out")}
    finally:
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()
    ref = tree(out_ref)
    fault_table(
        "S3 server down 3 s mid-build",
        "finishes; re-run gives same bytes",
        f"first exit {first.exit_code()} ({len(first.failures())} failures), "
        f"then exit {final.exit_code()}, identical: {got == ref}",
        lost_samples(got, ref),
    )
    assert down and final.exit_code() == 0  # build_meanwhile: the build ran when it went down
    assert got == ref


def test_work_on_a_full_filesystem(release_setup, release_built, client, full_disk, fault_table):
    """{work} fills up (4 MB: a tmpfs, or an fsspec file system raising ENOSPC): the build
    ends with the reason (no hang, no half-written file taken for a whole one); with room
    again, the same command completes it, same bytes."""
    _, urls, config = release_setup
    out_ref, _ = release_built
    full_disk.size(4 << 20)
    work, out = f"{full_disk.url}/work", full_disk.path.parent / "out"
    first = build_dataset(urls, work, str(out), build_configs(config), client)
    reasons = [r["reason"] for r in first.failures()]
    full_disk.make_room()
    final = build_dataset(urls, work, str(out), build_configs(config), client)
    got, ref = tree(out), tree(out_ref)
    fault_table(
        f"{{work}} on a full filesystem (4 MB, {full_disk.kind})",
        "ends with ENOSPC reasons; re-run with room: same bytes",
        f"first exit {first.exit_code()} ({reasons[0] if reasons else 'no failure'}); "
        f"then exit {final.exit_code()}, identical: {got == ref}",
        lost_samples(got, ref),
    )
    assert first.exit_code() != 0
    assert any("No space left" in r for r in reasons), reasons
    assert final.exit_code() == 0, final.failures()
    assert got == ref
    assert not list((full_disk.path / "work").rglob("*partial*"))
