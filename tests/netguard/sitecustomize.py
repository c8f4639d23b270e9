"""Run at start-up by every Python process the tests start (conftest.py puts this folder on
PYTHONPATH): installs the network guard when $SARLO_NETGUARD names its log folder."""

import os

if os.environ.get("SARLO_NETGUARD"):
    import netguard

    netguard.install()
