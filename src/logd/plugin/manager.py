"""Loading plugins once: entry points of group `logd`, each guarded, then the env filters.

`LOGD_DISABLE_PLUGINS=name,name` skips plugins by entry-point name (`*` skips all);
`LOGD_PLUGINS=name,name` loads only those (see `logd.entrypoints`). A plugin that fails to
import is a warning naming it; the rest still load. Two providers with one name is a
`PluginError` naming both plugins.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

from logd.errors import PluginError
from logd.plugin import hookspecs
from logd.plugin.entrypoints import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP
from logd.plugin.entrypoints import enabled_entry_points

if TYPE_CHECKING:
    from logd.delivery.sinks import SinkKind
    from logd.plugin.provider import Provider
    from logd.plugin.simulator import Simulator

log = logging.getLogger("logd.plugins")

#: logd's own hook implementations, registered as plugins are (as datasette registers its
#: built-ins): each is a module light to import.
DEFAULT_PLUGINS = ("logd.delivery.sinks.builtin",)


@dataclass
class PluginInfo:
    """One loaded (or failed) plugin, for `logd plugins`."""

    name: str
    distribution: str | None
    version: str | None
    providers: list[str] = field(default_factory=list)
    simulators: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Registry:
    """What the loaded plugins registered, keyed by provider name."""

    providers: dict[str, type[Provider[Any]]] = field(default_factory=dict)
    simulators: dict[str, type[Simulator]] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    pm: pluggy.PluginManager = field(default_factory=lambda: _new_manager())

    def sink_kinds(self) -> dict[str, SinkKind]:
        """Every registered kind of sink by name (logd's own and the plugins'), or a
        `PluginError` when two register one name."""
        kinds: dict[str, SinkKind] = {}

        def register(kind: SinkKind) -> None:
            if kind.name in kinds:
                raise PluginError(
                    f"sink kind {kind.name!r} is registered twice",
                    hint="uninstall one of the plugins registering it or disable it with "
                    "LOGD_DISABLE_PLUGINS",
                )
            kinds[kind.name] = kind

        self.pm.hook.register_sinks(register=register)
        return kinds

    def provider(self, name: str) -> type[Provider[Any]]:
        """The provider class registered as `name`, or a `PluginError` listing the installed."""
        try:
            return self.providers[name]
        except KeyError:
            installed = ", ".join(sorted(self.providers)) or "none"
            raise PluginError(f"unknown provider {name!r}; installed: {installed}") from None


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("logd")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    return pm


_registry: Registry | None = None
#: Registries of only the plugins named after a set of providers (`load_plugins(providers=)`).
_named: dict[frozenset[str], Registry] = {}


def load_plugins(*, reload: bool = False, providers: Collection[str] = ()) -> Registry:
    """Load every `logd` entry point once (cached) and collect what they register.

    With `providers` (what `logd sync` is about to poll), the entry points named after them
    load alone when they register all of them, which spares a sync importing every other
    plugin (about 100 ms for the bundled four). It is cached apart from the full one: a
    second plugin registering one of those names is noticed only by a full load (`logd
    plugins`, `check-config`, `logd run`). Otherwise, or when one is missing, everything loads.
    """
    global _registry
    if reload:
        _named.clear()
    elif _registry is not None:
        return _registry
    entry_points = enabled_entry_points()
    if providers:
        wanted = frozenset(providers)
        named = _named.get(wanted)
        if named is None:
            named = Registry()
            _load(named, [ep for ep in entry_points if ep.name in wanted])
        if wanted <= set(named.providers):
            _named[wanted] = named
            return named
    registry = Registry()
    _load(registry, entry_points)
    _registry = registry
    return registry


def _load(registry: Registry, entry_points: Sequence[importlib.metadata.EntryPoint]) -> None:
    for ep in entry_points:
        dist = ep.dist
        info = PluginInfo(ep.name, dist.name if dist else None, dist.version if dist else None)
        registry.plugins.append(info)
        try:
            module = ep.load()
            registry.pm.register(module, name=ep.name)
        except Exception as exc:  # a broken plugin must not take the others down
            info.error = f"{type(exc).__name__}: {exc}"
            log.warning("plugin %s failed to load and is skipped: %s", ep.name, info.error)
            continue
        _collect(registry, info, module)


def register_module(registry: Registry, name: str, module: Any) -> PluginInfo:
    """Register an in-process plugin module (tests use this for throwaway providers)."""
    info = PluginInfo(name, None, None)
    registry.plugins.append(info)
    registry.pm.register(module, name=name)
    _collect(registry, info, module)
    return info


def _collect(registry: Registry, info: PluginInfo, module: Any) -> None:
    owners = {p: i.name for i in registry.plugins for p in i.providers}

    def register_provider(cls: type[Provider[Any]]) -> None:
        name = cls.name
        if name in registry.providers:
            raise PluginError(
                f"provider {name!r} is registered by both plugin {owners.get(name, '?')!r} "
                f"and plugin {info.name!r}",
                hint="uninstall one of them or disable it with LOGD_DISABLE_PLUGINS",
            )
        registry.providers[name] = cls
        owners[name] = info.name
        info.providers.append(name)

    def register_simulator(cls: type[Simulator]) -> None:
        registry.simulators[cls.provider] = cls
        info.simulators.append(cls.provider)

    hook = getattr(module, "register_providers", None)
    if hook is not None:
        hook(register=register_provider)
    hook = getattr(module, "register_simulators", None)
    if hook is not None:
        hook(register=register_simulator)


def reset() -> None:
    """Forget the loaded plugins (tests)."""
    global _registry
    _registry = None
    _named.clear()


__all__ = ["Registry", "load_plugins", "register_module", "reset"]
