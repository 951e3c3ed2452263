"""A small name -> factory registry, filled by a decorator (models, transforms, decoders)."""
from __future__ import annotations

from typing import Any, Callable, Mapping, TypeVar

from featx.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])


class Registry:
    """Maps the ``type`` names used in configs to classes or factory functions."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator: register a class or function under ``name`` (default: its own name)."""

        def add(factory: F) -> F:
            key = name or factory.__name__
            if key in self._factories:
                raise KeyError(f"{self.kind} {key!r} is registered twice")
            self._factories[key] = factory
            return factory

        return add

    def __contains__(self, name: str) -> bool:
        return name in self._factories

    def name_of(self, factory: Callable[..., Any]) -> str:
        """The name ``factory`` is registered under."""
        return next(name for name, f in self._factories.items() if f is factory)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._factories[name]
        except KeyError:
            known = ", ".join(self.names())
            raise UserError(f"unknown {self.kind} type {name!r} (known: {known})") from None

    def build(self, cfg: Mapping[str, Any], **extra: Any) -> Any:
        """Build from a config dict ``{'type': NAME, **kwargs}``; ``extra`` adds keyword arguments."""
        if not isinstance(cfg, Mapping) or "type" not in cfg:
            raise UserError(f"a {self.kind} config must be a dict with a 'type' key, got {cfg!r}")
        kwargs = {k: v for k, v in cfg.items() if k != "type"}
        kwargs.update(extra)
        factory = self.get(cfg["type"])
        try:
            return factory(**kwargs)
        except TypeError as exc:
            raise UserError(f"{self.kind} {cfg['type']}: {exc}") from exc


MODELS = Registry("model")
TRANSFORMS = Registry("transform")
DECODERS = Registry("decoder")
FORMATS = Registry("output format")
