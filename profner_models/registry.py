"""Registered, config-driven model parts (as spaCy's registered architectures).

A backbone or head is built from its config block, whose ``name`` key selects the factory::

    @backbones.register("rnn")
    def build_rnn(config: dict, resources: Resources) -> nn.Module: ...

    backbone = backbones.build(config["model"]["backbone"], resources)

Adding an architecture means registering one more factory; the trainer, the trainables and
the server never change.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of factories ``(config_block, **kwargs) -> T``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._factories[name]
        except KeyError:
            known = ", ".join(sorted(self._factories)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r} (registered: {known})") from None

    def build(self, block: dict[str, Any], **kwargs: Any) -> T:
        """Build from a config block; ``block['name']`` picks the factory."""
        if "name" not in block:
            raise KeyError(f"{self.kind} config has no 'name' key: {block!r}")
        return self.get(block["name"])(block, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._factories)
