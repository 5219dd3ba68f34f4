"""The README and docs/ stay true: links resolve, the diagram matches its source, every code block says
whether it is run (and the ones marked `run: unit` are run here)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)
ANNOTATION = re.compile(r"<!-- (run: [^>]+|not run: [^>]+) -->\s*$")


def code_blocks(page: Path) -> list[tuple[str, str, str]]:
    """(annotation or "", language, code) for every fenced block of `page`."""
    text = page.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        note = ANNOTATION.search(before)
        blocks.append((note.group(1) if note else "", match.group(1), match.group(2)))
    return blocks


def unit_blocks() -> list:
    return [
        pytest.param(code, id=f"{page.name}-{i}")
        for page in PAGES
        for i, (note, language, code) in enumerate(code_blocks(page))
        if note == "run: unit" and language == "python"
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    missing = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert not missing, f"{page.name} links to files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_code_block_says_whether_it_is_run(page):
    bare = [code.splitlines()[0] for note, _, code in code_blocks(page) if not note]
    assert not bare, f"{page.name}: code blocks without <!-- run: ... --> or <!-- not run: reason -->: {bare}"


def test_the_diagram_is_rendered_from_the_current_source():
    source = hashlib.sha256((ROOT / "docs/architecture.dot").read_bytes()).hexdigest()
    recorded = re.search(r"sha256 ([0-9a-f]{64})", (ROOT / "docs/architecture.svg").read_text()[:500])
    assert recorded, "docs/architecture.svg does not record its source's hash: run `make docs-diagram`"
    assert recorded.group(1) == source, (
        "docs/architecture.svg is older than docs/architecture.dot: run `make docs-diagram`"
    )


def test_the_readme_is_a_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 80, "the README is an entry page; reference belongs in docs/"
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme, f"the README's table does not list docs/{page.name}"


@pytest.mark.parametrize("code", unit_blocks())
def test_the_examples_marked_run_unit_run(code):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__"})  # noqa: S102 - our own docs
    assert out.getvalue().strip(), "the example printed nothing"
