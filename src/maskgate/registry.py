"""One small registry class for everything made by name from the config (detectors, losses, samplers)."""
from __future__ import annotations

from typing import Any, Callable


class Registry(dict):
    """name -> factory; `register(name)` is a decorator, `create(name, **kwargs)` builds one."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable:
        def deco(fn):
            self[name] = fn
            return fn
        return deco

    def create(self, name: str, **kwargs) -> Any:
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; choose from {sorted(self)}")
        return self[name](**kwargs)
