"""A small name -> factory registry, filled by a decorator (models, layers, transforms, decoders, formats)."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any, Callable, Mapping, Sequence, TypeVar

from featx.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])


class Registry:
    """Maps the ``type`` names used in configs to classes or factory functions.

    ``providers`` are the packages whose modules register into it: every lookup imports them all
    first, so what is registered never depends on which modules happened to be imported. ``check``,
    when set (by the module that defines what an entry must be), sees each ``(name, factory)`` as it
    is registered and raises TypeError on one that breaks the registry's contract. A registry with a
    ``base`` holds what differs from it (a config dialect's own steps) and falls back to it.
    """

    def __init__(self, kind: str, providers: Sequence[str] = (), base: Registry | None = None) -> None:
        self.kind = kind
        self.providers = tuple(providers)
        self.base = base  # names not registered here are looked up there (a dialect's steps over the shared ones)
        self.check: Callable[[str, Callable[..., Any]], None] | None = None
        self._factories: dict[str, Callable[..., Any]] = {}
        self._loaded = not self.providers

    def register(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator: register a class or function under ``name`` (default: its own name)."""

        def add(factory: F) -> F:
            key = name or factory.__name__
            if key in self._factories:
                raise KeyError(f"{self.kind} {key!r} is registered twice")
            if self.check is not None:
                self.check(key, factory)
            self._factories[key] = factory
            return factory

        return add

    def _load(self) -> dict[str, Callable[..., Any]]:
        if not self._loaded:
            self._loaded = True
            for package in self.providers:
                module = importlib.import_module(package)
                for info in pkgutil.walk_packages(getattr(module, "__path__", []), package + "."):
                    importlib.import_module(info.name)
        if self.base is None:
            return self._factories
        return {**self.base._load(), **self._factories}

    def __contains__(self, name: object) -> bool:
        return name in self._load()

    def name_of(self, factory: Callable[..., Any]) -> str:
        """The name ``factory`` is registered under."""
        return next(name for name, f in self._load().items() if f is factory)

    def names(self) -> list[str]:
        return sorted(self._load())

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._load()[name]
        except KeyError:
            known = ", ".join(self.names())
            raise UserError(f"unknown {self.kind} type {name!r} (known: {known})") from None

    def build(self, cfg: Mapping[str, Any], *args: Any, **extra: Any) -> Any:
        """Build from a config dict ``{'type': NAME, **kwargs}``; ``args`` and ``extra`` are added.

        Arguments the factory does not take (or lacks) are the config's fault, a UserError; any
        error raised while it builds is a bug and propagates as it is.
        """
        if not isinstance(cfg, Mapping) or "type" not in cfg:
            raise UserError(f"a {self.kind} config must be a dict with a 'type' key, got {cfg!r}")
        kwargs = {k: v for k, v in cfg.items() if k != "type"}
        kwargs.update(extra)
        factory = self.get(cfg["type"])
        try:
            check_arguments(factory, args, kwargs)
        except TypeError as exc:
            raise UserError(f"{self.kind} {cfg['type']}: {exc}") from None
        return factory(*args, **kwargs)


def check_arguments(factory: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any],
                    partial: bool = False) -> None:
    """Raise TypeError when ``factory(*args, **kwargs)`` cannot bind; a class whose ``__init__`` passes
    ``**kwargs`` on to its base is checked against the base's signature too (``partial``: only for
    arguments it does not take)."""
    signature = inspect.signature(factory)
    bound = signature.bind_partial(*args, **kwargs) if partial else signature.bind(*args, **kwargs)
    passed_on = next((p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD), None)
    if passed_on is None or not inspect.isclass(factory):
        return
    init_owner = next(c for c in factory.__mro__ if "__init__" in vars(c))
    base = next((c for c in init_owner.__mro__[1:] if "__init__" in vars(c)), object)
    if base is not object:
        check_arguments(base, (), bound.arguments.get(passed_on, {}), partial=True)


MODELS = Registry("model", providers=("featx.models",))
TRANSFORMS = Registry("transform", providers=("featx.data",))
# MMAction2 1.x's pipeline steps where they differ from 0.x's (SampleFrames) or are new (UniformSample)
TRANSFORMS_1X = Registry("transform", providers=("featx.data",), base=TRANSFORMS)
DIALECTS = Registry("config dialect", providers=("featx.dialects",))
DECODERS = Registry("decoder", providers=("featx.data",))
FORMATS = Registry("output format", providers=("featx.outputs",))
