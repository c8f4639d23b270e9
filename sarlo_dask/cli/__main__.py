"""`python -m sarlo_dask.cli`: the `sarlo` command."""

from sarlo_dask.cli import main

main()
