"""The `sarlo` command line: the commands (app), how a build is run from them (run), the
tools beside the build (tools), the demo and the figures of a release. `main` is the
`sarlo` entry point (`sarlo_dask.cli:main`; also `python -m sarlo_dask.cli`)."""


def main() -> None:
    """The `sarlo` command (its modules imported only now: a bare import stays light)."""
    from sarlo_dask.cli.app import main as run

    run()
