"""MkDocs hooks: the README and CHANGELOG are site pages, benchmark figures site files.

The repository keeps one README (GitHub's front page), one CHANGELOG and the figures where
the benchmarks write them (``benchmarks/results/*.png``). The site serves the README as
``index.md`` and the CHANGELOG as ``changelog.md``, with their ``docs/`` link prefixes
dropped, and every figure under ``results-figures/``; links to
``benchmarks/results/<name>.png`` from any page are rewritten to that copy.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "benchmarks" / "results"
SITE_FIGURES = "results-figures"
_FIGURE_LINK = re.compile(r"\]\((?:\.\./)*benchmarks/results/([^)\s]+\.png)\)")
_DOCS_LINK = re.compile(r"\]\(docs/")


#: site page -> repository file, both outside ``docs/``
ROOT_PAGES = {"index.md": "README.md", "changelog.md": "CHANGELOG.md"}


def on_files(files, config):
    for page, source in ROOT_PAGES.items():
        files.append(File.generated(config, page, abs_src_path=str(ROOT / source)))
    for png in sorted(FIGURES.glob("*.png")):
        files.append(File.generated(config, f"{SITE_FIGURES}/{png.name}", abs_src_path=str(png)))
    return files


def on_page_markdown(markdown, page, config, files):
    depth = posixpath.dirname(page.file.src_uri)
    prefix = posixpath.relpath(SITE_FIGURES, depth or ".")
    markdown = _FIGURE_LINK.sub(lambda m: f"]({prefix}/{m.group(1)})", markdown)
    if page.file.src_uri in ROOT_PAGES:
        markdown = _DOCS_LINK.sub("](", markdown)
        for site_page, source in ROOT_PAGES.items():
            markdown = markdown.replace(f"]({source})", f"]({site_page})")
    return markdown
