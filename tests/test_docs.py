"""The committed docs stay consistent with the files their pages are built from.

A report page embeds a hand-written reading (``docs/<dir>/<name>/<stem>_reading.md`` -> ``docs/<dir>/<name>_<stem>.md``)
or notes (``docs/intro/<page>.md`` -> ``docs/<page>.md``) verbatim; rebuilding a page from its command takes them
from those files, so an edit made to the page alone would be lost at the next rebuild. Relative links in the README
and the pages must point at files that exist (readings and notes are checked through the pages that embed them:
their links are relative to the page).
"""

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def embedded_sources():
    """(source file, page that embeds it) for every reading and every notes file under docs/."""
    pairs = []
    for reading in glob.glob(os.path.join(DOCS, "**", "*_reading.md"), recursive=True):
        folder, name = os.path.split(reading)
        parent, group = os.path.split(folder)
        pairs.append((reading, os.path.join(parent, f"{group}_{name[:-len('_reading.md')]}.md")))
    for notes in glob.glob(os.path.join(DOCS, "intro", "*.md")):
        pairs.append((notes, os.path.join(DOCS, os.path.basename(notes))))
    return sorted(pairs)


def pages():
    """The README and every docs page that is not itself embedded in another."""
    embedded = {source for source, _ in embedded_sources()}
    found = glob.glob(os.path.join(DOCS, "**", "*.md"), recursive=True)
    return [os.path.join(ROOT, "README.md")] + sorted(p for p in found if p not in embedded)


def broken_links(path):
    """Relative link targets in the markdown file ``path`` that do not exist."""
    broken = []
    for match in re.finditer(r"\]\(([^)\s]+)\)", _read(path)):
        target = match.group(1).split("#")[0]
        if target and "://" not in target and not target.startswith("mailto:"):
            if not os.path.exists(os.path.join(os.path.dirname(path), target)):
                broken.append(target)
    return broken


def test_the_docs_have_readings_and_notes_to_check():
    # Guards the globs below: an empty list would make the parametrised tests pass vacuously.
    assert len(embedded_sources()) >= 15 and len(pages()) >= 20


@pytest.mark.parametrize("source, page", embedded_sources(), ids=lambda p: os.path.relpath(p, DOCS))
def test_every_reading_and_notes_file_is_embedded_verbatim_in_its_page(source, page):
    assert os.path.exists(page), f"{os.path.relpath(source, ROOT)} has no page {os.path.relpath(page, ROOT)}"
    assert _read(source).strip() in _read(page), (
        f"{os.path.relpath(page, ROOT)} does not contain {os.path.relpath(source, ROOT)} as it is: edit the source "
        "file and rebuild the page (or copy the change to both)")


@pytest.mark.parametrize("page", pages(), ids=lambda p: os.path.relpath(p, ROOT))
def test_relative_links_point_at_files_that_exist(page):
    assert broken_links(page) == []


def test_a_broken_link_is_found(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("x")
    page.write_text("[a](there.md) [b](missing.md#part) [c](https://example.org/x) [d](there.md#anchor)")
    assert broken_links(str(page)) == ["missing.md"]
