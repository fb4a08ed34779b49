"""The docs site lists every page: a page missing from mkdocs.yml's nav is unreachable."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _pages(nav) -> list[str]:
    out = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        out += _pages(value) if isinstance(value, list) else [value]
    return out


def test_every_docs_page_is_in_the_nav_and_every_nav_entry_exists():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = _pages(config["nav"])
    docs = ROOT / config["docs_dir"]
    pages = {p.relative_to(docs).as_posix() for p in docs.rglob("*.md")}
    assert sorted(pages - set(nav)) == []
    # README and CHANGELOG are served by scripts/mkdocs_hooks.py
    assert sorted(set(nav) - pages - {"index.md", "changelog.md"}) == []
