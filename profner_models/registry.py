"""Registered, versioned, config-driven parts (as spaCy's registered architectures).

A part is built from its config block, whose ``name`` picks the factory; each factory carries
the schema of its block (``config.Schema``)::

    @backbones.register("rnn.v1", schema=RNNConfig)
    def build_rnn(block: dict, *, context: BackboneContext) -> nn.Module: ...

    block = backbones.check(raw_block, "model.backbone")   # name versioned, defaults filled
    backbone = backbones.build(block, context=context)

Names carry a version (``rnn.v1``): a change of what a block means is a new version beside the
old one, so a saved model keeps building as it was trained. An unversioned name (model dirs
saved before versions existed) means ``.v1``. Adding an architecture is registering one more
factory; the trainer, the trainables and the server never change. (Tasks are registered by
plain name: ``task: profner`` names what a corpus is, not a version of code.)
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Callable, Generic, TypeVar

from profner_models.config import ConfigError, Schema, check

T = TypeVar("T")
VERSIONED = re.compile(r"^[a-z][a-z0-9_]*\.v[0-9]+$")


class Registry(Generic[T]):
    """A named table of factories ``(config_block, **kwargs) -> T`` and their block schemas."""

    def __init__(self, kind: str, versioned: bool = True) -> None:
        self.kind = kind
        self.versioned = versioned
        self._factories: dict[str, Callable[..., T]] = {}
        self._schemas: dict[str, type[Schema] | None] = {}

    def register(self, name: str, schema: type[Schema] | None = None
                 ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        if self.versioned and not VERSIONED.match(name):
            raise ValueError(f"{self.kind} name {name!r} must carry a version, e.g. {name}.v1")

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            self._schemas[name] = schema
            return factory

        return decorator

    def resolve(self, name: str) -> str:
        """The registered (versioned) name ``name`` means: ``rnn`` -> ``rnn.v1``."""
        versioned = name if not self.versioned or VERSIONED.match(str(name)) else f"{name}.v1"
        if versioned not in self._factories:
            stems = {registered.rsplit(".v", 1)[0]: registered for registered in self.names()}
            near = difflib.get_close_matches(str(name).rsplit(".v", 1)[0], list(stems), n=1)
            hint = f"did you mean {stems[near[0]]!r}? " if near else ""
            raise KeyError(f"unknown {self.kind} {name!r} ({hint}registered: "
                           f"{', '.join(self.names()) or 'none'})")
        return versioned

    def get(self, name: str) -> Callable[..., T]:
        return self._factories[self.resolve(name)]

    def check(self, block: Any, path: str) -> dict:
        """``block`` with its name versioned and its schema's defaults filled in."""
        if not isinstance(block, dict) or "name" not in block:
            raise ConfigError(f"{path}: a {self.kind} block needs a 'name' ({', '.join(self.names())})")
        try:
            name = self.resolve(block["name"])
        except KeyError as error:
            raise ConfigError(f"{path}.name: {error.args[0]}") from None
        schema = self._schemas[name]
        rest = {k: v for k, v in block.items() if k != "name"}
        return {"name": name, **(check(schema, rest, path) if schema is not None else rest)}

    def build(self, block: dict[str, Any], **kwargs: Any) -> T:
        """Build from a config block; ``block['name']`` picks the factory, which gets the block
        checked (name versioned, defaults filled). ``block`` itself is never changed."""
        checked = self.check(block, self.kind)
        return self._factories[checked["name"]](checked, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._factories)
