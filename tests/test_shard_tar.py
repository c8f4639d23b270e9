"""The shard writer against webdataset's own TarWriter: the same samples give the same bytes,
Python's tarfile finds every member where the writer says, and the hash is the file's."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sarlo_dask.io.shard_tar import ShardTar, mapped

SIZES = st.sampled_from([0, 1, 511, 512, 513, 10240, 70_001])
SAMPLES = st.lists(
    st.dictionaries(
        st.sampled_from(["meta.json", "sar.npy", "sar.png", "sicd.xml"]), SIZES, min_size=1
    ),
    min_size=1,
    max_size=4,
)


def reference(samples: list[dict[str, bytes]]) -> bytes:
    import webdataset as wds

    buf = io.BytesIO()
    with wds.TarWriter(buf, mtime=0, encoder=False) as tw:
        for i, sample in enumerate(samples):
            tw.write({"__key__": f"scene_a{i:05d}_r00000", **sample})
    return buf.getvalue()


@settings(max_examples=40, deadline=None)
@given(SAMPLES, st.integers(0, 2**32 - 1))
def test_same_bytes_as_webdatasets_tar_writer(sizes, seed):
    rng = np.random.default_rng(seed)
    samples = [{m: rng.bytes(n) for m, n in s.items()} for s in sizes]
    buf = io.BytesIO()
    tar = ShardTar(buf)
    for i, sample in enumerate(samples):
        tar.write(f"scene_a{i:05d}_r00000", sample)
    digest = tar.close()
    data = buf.getvalue()
    assert data == reference(samples)
    assert digest == hashlib.sha256(data).hexdigest() and tar.size == len(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        found = {
            m.name: (m.offset_data, m.size, hashlib.sha256(tf.extractfile(m).read()).hexdigest())
            for m in tf.getmembers()
        }
    said = {f"{k}.{m}": tuple(v) for k, ms in tar.members.items() for m, v in ms.items()}
    assert said == found  # where each member lies, and its sha256 (range reads check it)


@pytest.mark.parametrize("size", [10, 3 << 20])
def test_mapped_members_write_their_files_bytes(tmp_path, size):
    """A large local member is mapped, a small one read; both write the file's bytes."""
    payload = np.random.default_rng(size).bytes(size)
    (tmp_path / "a.npy").write_bytes(payload)
    member = mapped(str(tmp_path / "a.npy"))
    assert isinstance(member, memoryview if size >= 1 << 20 else bytes)
    buf = io.BytesIO()
    tar = ShardTar(buf)
    tar.write("scene_a00000_r00000", {"sar.npy": member})
    tar.close()
    assert buf.getvalue() == reference([{"sar.npy": payload}])
