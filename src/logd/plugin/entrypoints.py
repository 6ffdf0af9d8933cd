"""The `logd` entry points, and what can be told about them without importing a plugin.

`LOGD_DISABLE_PLUGINS=name,name` skips plugins by entry-point name (`*` skips all);
`LOGD_PLUGINS=name,name` keeps only those. `logd.plugins` loads what this module lists;
`logd --help` asks `may_add_commands` first, because importing the plugins (each brings
httpx, pydantic and its provider) costs several times what the rest of the help does.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path

ENTRY_POINT_GROUP = "logd"

# Source text that lets a module hold a `register_commands` hook without naming it: names
# pulled in wholesale, module attributes set dynamically, a module-level __getattr__/__dir__.
_OPAQUE = (b"import *", b"globals(", b"setattr(", b"__dict__", b"sys.modules", b"__getattr__")


def _names(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def enabled_entry_points() -> list[importlib.metadata.EntryPoint]:
    """The entry points to load: sorted by name, each name once, the env filters applied."""
    disabled = _names("LOGD_DISABLE_PLUGINS") or set()
    allowed = _names("LOGD_PLUGINS")
    found = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    enabled = []
    seen: set[str] = set()
    for ep in found:
        if ep.name in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(ep.name)
        if (
            "*" in disabled
            or ep.name in disabled
            or (allowed is not None and ep.name not in allowed)
        ):
            continue
        enabled.append(ep)
    return enabled


def may_add_commands(ep: importlib.metadata.EntryPoint) -> bool:
    """False only when the plugin's own source shows it cannot implement `register_commands`.

    pluggy finds hook implementations among the attributes of the registered module, so a
    module whose source never names the hook, and that cannot gain attributes in a way the
    text does not show, has none. Whatever cannot be read as such (an object entry point, a
    submodule, compiled code, one of `_OPAQUE`) counts as adding commands: it gets imported.
    """
    if ep.attr or "." in ep.module:  # find_spec would import the parent package
        return True
    try:
        spec = importlib.util.find_spec(ep.module)
    except (ImportError, ValueError):
        return True  # importing it reports the error, as before
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return True
    try:
        source = Path(spec.origin).read_bytes()
    except OSError:
        return True
    return b"register_commands" in source or any(mark in source for mark in _OPAQUE)
