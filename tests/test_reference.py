"""The configuration reference and the example config cover every key there is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from logd.config.reference import fields_of, models, render
from logd.config.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"


def all_keys() -> list[tuple[str, str]]:
    return [
        (heading, name) for heading, model, skip in models() for name, _ in fields_of(model, skip)
    ]


def test_every_key_has_a_description() -> None:
    missing = [
        f"{heading}: {name}"
        for heading, model, skip in models()
        for name, field in fields_of(model, skip)
        if not field.description
    ]
    assert missing == []


def test_the_reference_in_docs_is_current() -> None:
    current = (ROOT / "docs" / "config-reference.md").read_text()
    assert current == render(), "run: .venv/bin/logd config-reference > docs/config-reference.md"


def test_the_example_config_mentions_every_key() -> None:
    text = EXAMPLE.read_text()
    missing = [f"{h}: {k}" for h, k in all_keys() if not re.search(rf"\b{k}\s*=|\.{k}\]\]", text)]
    assert missing == []


def test_the_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in re.findall(r'env = "(\w+)"', EXAMPLE.read_text()):
        monkeypatch.setenv(var, "d2hzZWNfZXhhbXBsZQ==" if "SECRET" in var else f"value-of-{var}")
    settings = load_settings(EXAMPLE)
    assert [s.provider for s in settings.sources] == [
        "fleetit",
        "pegasus",
        "elasticpath",
        "maestra",
        "akinon",
        "http",
    ]
