"""Kinds of a declared seam (an optical source, a height source): the built-in classes, those
registered in this process and those installed packages declare in an entry point group.
Each seam keeps one `Registry`; a spec is taken by the first kind whose `parse` claims it."""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")

_ALL: list[Registry[Any]] = []
"""every seam's registry, as its module makes it"""

_SHARED: dict[str, tuple[type, ...]] = {}
"""entry point group -> the kinds another process (a build's client) registered and shared
with this one (a worker: sarlo_dask.driver.worker_state.SharedKinds)"""


def registered_kinds() -> dict[str, tuple[type, ...]]:
    """The kinds registered in this process, by their seam's entry point group."""
    return {r.group: tuple(r.registered) for r in _ALL if r.registered}


def share(kinds: dict[str, tuple[type, ...]]) -> None:
    """Take `kinds` (registered_kinds() of another process) as registered here too, in one
    step (a task reading the kinds meanwhile sees the old ones or the new ones)."""
    global _SHARED
    _SHARED = dict(kinds)


class Registry(Generic[T]):
    """The kinds of one seam: subclasses of `base`, tried registered first, then installed
    (entry point `group`, read once per process: tasks ask too), then `built_in`."""

    def __init__(self, base: type, group: str, built_in: tuple[type[T], ...]) -> None:
        self.base, self.group, self.built_in = base, group, built_in
        self.registered: list[type[T]] = []
        self._installed: tuple[type[T], ...] | None = None
        _ALL.append(self)

    def register(self, kind: type[T]) -> type[T]:
        """Try `kind` before the built-in kinds (a class decorator). In a build the workers
        get the kinds registered in the client's process (SharedKinds)."""
        if not (isinstance(kind, type) and issubclass(kind, self.base)):
            raise TypeError(f"{kind!r} is not {self._a_base()}")
        if kind not in self.registered:
            self.registered.append(kind)
        return kind

    def installed(self) -> tuple[type[T], ...]:
        """The kinds installed packages declare in the entry point group (a ValueError naming
        one that cannot be loaded or is not of the seam)."""
        if self._installed is None:
            from importlib.metadata import entry_points

            found: list[type[T]] = []
            for ep in sorted(entry_points(group=self.group), key=lambda e: e.name):
                where = f"entry point {ep.name} = {ep.value} ({self.group})"
                try:
                    kind: Any = ep.load()
                except Exception as exc:  # a broken package: said in one line, not a traceback
                    why = f"{type(exc).__name__}: {exc}"
                    raise ValueError(f"{where}: cannot be loaded ({why})") from None
                if not (isinstance(kind, type) and issubclass(kind, self.base)):
                    raise ValueError(f"{where}: not {self._a_base()}")
                found.append(cast(type[T], kind))
            self._installed = tuple(found)
        return self._installed

    def _a_base(self) -> str:
        name = self.base.__name__
        return f"{'an' if name[0] in 'AEIOU' else 'a'} {name} class"

    def kinds(self) -> list[type[T]]:
        """Every kind, in the order a spec is tried: registered (here, then in the build's
        client process), installed, built-in."""
        shared = cast(tuple[type[T], ...], _SHARED.get(self.group, ()))  # one read
        kinds = [*self.registered, *shared, *self.installed(), *self.built_in]
        return list(dict.fromkeys(kinds))

    def added(self) -> list[type[T]]:
        """The kinds that are not built in (registered or installed)."""
        return [k for k in self.kinds() if k not in self.built_in]
