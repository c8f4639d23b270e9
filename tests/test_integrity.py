"""The digest logic of sarlo_dask.driver.integrity on its own: comparisons, one line per unit,
self-digested records."""

from __future__ import annotations

import json

from sarlo_dask.driver.integrity import (
    Damage,
    compare,
    one_per_unit,
    sealed,
    sha256,
    unsealed,
    verify_member,
    verify_meta,
)
from sarlo_dask.store import json_bytes


def test_compare_names_each_missing_and_changed_piece():
    recorded = {"a": "1", "b": "2", "c": "3"}
    assert compare(recorded, {"a": "1", "b": "9"}) == [
        ("b", "sha256 differs from the one recorded at commit"),
        ("c", "missing"),
    ]
    assert compare(recorded, {**recorded, "extra": "0"}) == []


def test_one_line_per_unit_counts_the_other_pieces():
    d = [
        Damage("scenes/s.zarr/slc/c/0/0", "missing", "scene", "s"),
        Damage("scenes/s.zarr/slc/c/0/1", "missing", "scene", "s"),
        Damage("tiles/s/k.sar.npy", "x", "tile", "s", "k"),
    ]
    lines = [u.line() for u in one_per_unit(d)]
    assert lines == [
        "DAMAGED scenes/s.zarr/slc/c/0/0: missing (and 1 more pieces); rebuilding scene s",
        "DAMAGED tiles/s/k.sar.npy: x; rebuilding tile s/k",
    ]


def test_a_sealed_record_verifies_and_any_edit_does_not():
    rec = sealed({"key": "k", "caption": {"MID": "A field."}})
    assert unsealed(json_bytes(rec)) == (rec, "")
    edited = {**rec, "caption": {"MID": "A lake."}}
    assert unsealed(json.dumps(edited).encode())[0] is None
    assert unsealed(b"{not json")[1] == "not valid JSON"
    assert unsealed(json_bytes({"key": "k"}))[1] == "it records no digest of itself"


def test_tile_members_and_meta_against_their_records():
    meta = {"digests": {"k.sar.npy": sha256(b"data")}}
    assert verify_member("s", "k", "sar.npy", b"data", meta) == []
    (bad,) = verify_member("s", "k", "sar.npy", b"other", meta)
    assert bad.path == "tiles/s/k.sar.npy" and bad.kind == "tile"
    (none,) = verify_member("s", "k", "sicd.xml", b"", meta)
    assert none.reason == "its meta.json records no digest of it"
    assert verify_meta("s", "k", None, None) == []  # no marker: nothing to check against
    assert verify_meta("s", "k", None, {"k": "1"})[0].reason == "missing"
    assert verify_meta("s", "k", "2", {"k": "1"})[0].reason.startswith("sha256 differs")
