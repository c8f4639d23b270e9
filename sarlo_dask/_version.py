"""The package's version, in a module of its own: what modules record in their outputs
without importing the package's `__init__` (and with it the public API)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sarlo-dask")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"
