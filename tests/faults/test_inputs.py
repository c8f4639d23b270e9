"""Malformed inputs mixed into a real build: every good scene's shards come out byte-identical
to the fault-free build, every bad input is in the failure report with its reason."""

from __future__ import annotations

import json
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sarlo_dask.pipeline import build_dataset

from ..helpers import build_configs, lost_samples, tree
from .nitf import bad_inputs


def _shards(folder: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree(folder).items() if k.endswith(".tar")}


def test_malformed_inputs_are_reported_and_good_scenes_come_out_the_same(
    release_setup, release_built, client, s3, s3_server, tmp_path, fault_table
):
    _, urls, config = release_setup
    out_ref, _ = release_built
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            requests.append(self.path)
            super().do_GET()

    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "secret").write_text("must never be fetched")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=tmp_path / "www"))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    external = f"http://127.0.0.1:{httpd.server_address[1]}/secret"
    expected = bad_inputs(tmp_path / "bad", Path(urls[-1]), external)
    (tmp_path / "dup").mkdir()
    shutil.copy(urls[0], tmp_path / "dup" / Path(urls[0]).name)
    # the workers read s3:// from the suite's moto server (AWS_ENDPOINT_URL, set in conftest)
    bad_urls = [str(tmp_path / "bad" / f"{name}.nitf") for name in expected]
    bad_urls += [str(tmp_path / "dup" / Path(urls[0]).name), "s3://sarlo/inputs/missing.nitf"]
    expected["duplicate"] = "duplicate scene id"
    expected["missing"] = "no such object"

    work, out = tmp_path / "work", tmp_path / "out"
    try:
        result = build_dataset(
            [*urls, *bad_urls], str(work), str(out), build_configs(config), client
        )
    finally:
        httpd.shutdown()
    rows = [json.loads(line) for line in (work / "failures.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in rows if r["kind"] == "scene" and r["id"] in expected}
    by_id["duplicate"] = next(r for r in rows if "duplicate scene id" in r["reason"])
    lost = lost_samples(tree(out), tree(out_ref))
    seen = s3_server.answers("/sarlo/inputs/missing.nitf")
    for name, words in expected.items():
        observed = by_id.get(name, {}).get("reason", "NOT REPORTED")
        if name == "missing":  # what the server itself answered
            observed = f"moto: {', '.join(f'{m} {p} {s}' for m, p, s in seen)}; {observed}"
        fault_table(f"input: {name}", words, observed, lost)
    assert seen and {status for _, _, status in seen} == {404}, seen  # moto was asked
    assert s3["client_kwargs"]["endpoint_url"] in by_id["missing"]["reason"]
    assert set(by_id) == set(expected), set(expected) - set(by_id)
    for name, words in expected.items():
        assert words in by_id[name]["reason"], (name, by_id[name])
        assert by_id[name]["stage"] and "\n" not in by_id[name]["reason"]
    assert result.exit_code() == 3
    assert _shards(out) == _shards(out_ref) and lost == 0  # nothing lost, nothing made up
    assert (
        json.loads((out / "manifest.json").read_text())["samples"]
        == json.loads((out_ref / "manifest.json").read_text())["samples"]
    )
    assert not requests, requests  # the external entity was never fetched
    manifest = json.loads((out / "manifest.json").read_text())
    refused = {r["scene_id"] for r in manifest["catalogue"]["refused"]}
    assert refused >= set(expected) - {"all_zero", "duplicate"}
