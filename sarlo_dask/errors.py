"""Errors that carry what failed, where, and why, as one line."""

from __future__ import annotations


class SceneError(Exception):
    """A scene that cannot be standardized: `where` names the input, `reason` says why."""

    def __init__(self, where: str, reason: str, stage: str = "ingest") -> None:
        self.where = where
        self.reason = reason
        self.stage = stage
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[type[SceneError], tuple[str, str, str]]:
        # keep the fields when the error crosses a process boundary (Dask workers)
        return (SceneError, (self.where, self.reason, self.stage))


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, at most `limit` characters (its type if empty)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:limit]
