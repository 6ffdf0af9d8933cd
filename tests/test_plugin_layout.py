"""Every bundled plugin has one layout, and no plugin module imports one that imports it back.

The layout is what the README's "Writing a provider plugin" promises: `src/logd_<name>/` with
`__init__.py` (hooks only), `provider.py` (the provider class), `options.py` (its options),
`simulator.py`, beside `tests/` and `README.md`. Import circles are found in the source (every
import, those inside functions and under `TYPE_CHECKING` included), not by importing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from logd.plugin.manager import load_plugins

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = sorted(p for p in (ROOT / "plugins").glob("logd-*") if p.is_dir())
MODULES = ("__init__.py", "provider.py", "options.py", "simulator.py")


def _package(plugin: Path) -> Path:
    return plugin / "src" / plugin.name.replace("-", "_")


def test_every_bundled_plugin_is_checked() -> None:
    names = {p.name for p in PLUGINS}
    assert {"logd-akinon", "logd-fleetit", "logd-maestra", "logd-pegasus"} <= names
    assert {"logd-elasticpath", "logd-http"} <= names


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_plugin_folder_has_the_common_layout(plugin: Path) -> None:
    package = _package(plugin)
    missing = [m for m in MODULES if not (package / m).is_file()]
    assert not missing, f"{plugin.name}: no {', '.join(missing)} in {package.relative_to(ROOT)}"
    assert (plugin / "README.md").is_file(), f"{plugin.name}: no README.md"
    assert list((plugin / "tests").glob("test_*.py")), f"{plugin.name}: no tests/test_*.py"


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_plugin_init_holds_only_hooks(plugin: Path) -> None:
    init = _package(plugin) / "__init__.py"
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            hooks = [d for d in node.decorator_list if isinstance(d, ast.Name)]
            assert any(d.id == "hookimpl" for d in hooks), f"{init}: {node.name} is not a hook"
            continue
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        exports = isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == [
            "__all__"
        ]
        imports = isinstance(node, ast.Import | ast.ImportFrom)
        assert docstring or exports or imports, f"{init}:{node.lineno}: more than hooks"


def test_each_provider_and_its_options_live_in_their_modules() -> None:
    registry = load_plugins()
    for name, cls in registry.providers.items():
        package = cls.__module__.split(".")[0]
        if not package.startswith("logd_"):
            continue  # a test's throwaway provider, not a bundled plugin
        assert cls.__module__ == f"{package}.provider", f"{name}: {cls.__module__}"
        options = cls.Options.__module__
        assert options == f"{package}.options", f"{name}'s options are in {options}"


def _imports(module: Path, package: str) -> set[str]:
    """Sibling modules `module` imports (relative or through `package.`), at any depth."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update(
                [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
            )
        elif isinstance(node, ast.ImportFrom) and node.module == package:
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(f"{package}."):
            found.add((node.module or "")[len(package) + 1 :].split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(
                a.name[len(package) + 1 :].split(".")[0]
                for a in node.names
                if a.name.startswith(f"{package}.")
            )
    return found


def _circles(directory: Path, package: str) -> list[list[str]]:
    graph = {m.stem: _imports(m, package) for m in directory.glob("*.py")}
    circles: list[list[str]] = []

    def walk(path: list[str]) -> None:
        for step in sorted(graph.get(path[-1], ())):
            if step in path:
                circles.append([*path[path.index(step) :], step])
            elif step in graph:
                walk([*path, step])

    for start in sorted(graph):
        walk([start])
    return circles


PACKAGES = {_package(p).name: _package(p) for p in PLUGINS} | {
    "logd.plugin": ROOT / "src/logd/plugin"
}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_circle(package: str) -> None:
    circles = _circles(PACKAGES[package], package)
    assert not circles, f"{package}: " + "; ".join(" -> ".join(c) for c in circles[:3])
