"""Run at start-up by every Python process the tests start (conftest.py puts this folder on
PYTHONPATH): installs the network guard when $SARLO_NETGUARD names its log folder, and
registers the tests' size-limited file system `fullfs://` (fullfs.py) with fsspec."""

import os

if os.environ.get("SARLO_NETGUARD"):
    import fsspec
    import netguard

    netguard.install()
    fsspec.register_implementation("fullfs", "fullfs.FullFileSystem", clobber=True)
