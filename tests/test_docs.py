"""The docs stand alone in a clone: no link leaves the repository, each plugin README states
the API contract it implements, and what the guides tell an operator to run works."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("plugins/*/README.md")])
PLUGIN_READMES = sorted(ROOT.glob("plugins/*/README.md"))

# Hosts a reader can see are examples, or this machine.
EXAMPLE_HOSTS = re.compile(r"(^|\.)(example\.(com|org|net)|localhost)$|^127\.0\.0\.1$|^\[?::1\]?$")
LINK = re.compile(r"\]\(([^)\s]+)[^)]*\)|<(https?://[^>\s]+)>")


def _links(text: str) -> list[str]:
    return [m.group(1) or m.group(2) for m in LINK.finditer(text)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_link_leaves_the_repository(doc: Path) -> None:
    text = doc.read_text()
    assert "../shared" not in text and "SOURCES.md" not in text
    assert not re.search(r"\bSOURCES\b", text), "cites a document that is not in the clone"
    for target in _links(text):
        parts = urlsplit(target)
        if parts.scheme in ("http", "https"):
            assert EXAMPLE_HOSTS.search(parts.hostname or ""), f"{doc.name}: links to {target}"
            continue
        assert not parts.scheme, f"{doc.name}: {target}"
        path = target.split("#")[0]
        if path:  # a relative link must name a file of the repository
            resolved = (doc.parent / path).resolve()
            assert resolved.exists() and ROOT in resolved.parents, f"{doc.name}: {target}"


CONTRACT_ROWS = ("Auth", "Paging", "Incremental rule", "Status mapping", "vendor is silent")


@pytest.mark.parametrize("readme", PLUGIN_READMES, ids=lambda p: p.parent.name)
def test_each_plugin_readme_states_its_api_contract(readme: Path) -> None:
    text = readme.read_text()
    section = text.split("## API contract", 1)
    assert len(section) == 2, f"{readme}: no API contract section"
    contract = section[1].split("\n## ", 1)[0]
    for row in CONTRACT_ROWS:
        assert f"| {row}" in contract or row in contract, f"{readme.parent.name}: no {row!r}"
    # The endpoints it calls, by path.
    assert re.search(r"`(GET|POST) \{base_url\}/", contract), readme
    assert "## Where the vendor's documentation is silent" in text


def test_install_service_puts_logd_on_path() -> None:
    dry = subprocess.run(
        ["make", "-n", "install-service", "SERVICE_BINDIR=/opt/bin-test"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "ln -sfn /opt/logd/venv/bin/logd /opt/bin-test/logd" in dry
    deploy = (ROOT / "docs/deploy.md").read_text()
    assert "/usr/local/bin/logd" in deploy and "SERVICE_BINDIR" in deploy


def test_the_installed_example_and_the_deploy_guide_agree_on_database() -> None:
    example = tomllib.loads((ROOT / "config.example.toml").read_text())
    assert "database" not in example  # "leave `database` out", as the guide says
    deploy = (ROOT / "docs/deploy.md").read_text()
    assert "Leave `database` out" in deploy
    # Without the key, the read commands find the daemon's store with no --db.
    assert "logd status --db" not in deploy


def test_the_readme_opens_with_the_two_commands_and_tells_the_cost_of_the_first() -> None:
    readme = (ROOT / "README.md").read_text()
    opening = readme.split("\n\n", 2)[1]
    assert opening.split()[:2] == ["make", "demo"] and "make test" in opening
    assert "about 2 minutes" in readme and "package index" in readme
    assert "replaced on every run" in readme  # make demo's directory
    assert "logd simulate" in readme and "--port-base" in readme
