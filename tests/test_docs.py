"""The README and docs/ against the code and each other: links that lead somewhere, the README's sample a cut of
the full one, every option of the commands in their docs. (Exit status tables: test_command.py, test_finalize.py.)"""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import load_command_class
from django.core.management.base import BaseCommand

from tests.helpers import doc_section

CHECKOUT = Path(settings.BASE_DIR)
DOCUMENTS = [CHECKOUT / "README.md", *sorted((CHECKOUT / "docs").glob("*.md"))]
FENCED = re.compile(r"^```.*?^```", flags=re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(path: Path) -> str:
    """The file without its code blocks: a ``#`` in a shell sample is no heading, a ``[x](y)`` there no link."""
    return FENCED.sub("", path.read_text())


def anchors(path: Path) -> set[str]:
    """The fragments GitHub gives the file's headings: lower case, punctuation but - and _ dropped, spaces to -."""
    headings = re.findall(r"^#+ (.+)$", prose(path), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(CHECKOUT)))
def test_every_link_leads_to_a_file_and_heading_of_the_checkout(document):
    for target in LINK.findall(prose(document)):
        if target.startswith(("http://", "https://")):
            continue
        file_part, _, fragment = target.partition("#")
        linked = (document.parent / file_part).resolve() if file_part else document
        assert linked.exists(), f"{document.name} links to {target}: no such file"
        if fragment:
            assert fragment in anchors(linked), f"{document.name} links to {target}: no such heading"


def code_block(section: str) -> list[str]:
    return FENCED.search(section).group(0).splitlines()[1:-1]


def test_the_readme_s_sample_is_a_cut_of_the_full_one():
    cut = code_block(doc_section("README.md", "## What `migrate_images` prints"))
    full = iter(code_block(doc_section("docs/migrate_images.md", "## The report")))
    # Every line the README keeps is in the full sample, in the same order; "..." marks what it leaves out.
    kept = [line for line in cut if line != "..."]
    assert len(kept) > 20
    assert all(line in full for line in kept)


def own_options(command: str) -> list[str]:
    """The command's options, each by its first name (--no-input, not its alias), Django's common ones left out."""
    common = {
        option
        for action in BaseCommand().create_parser("manage.py", "base")._actions
        for option in action.option_strings
    }
    parser = load_command_class("products", command).create_parser("manage.py", command)
    return [action.option_strings[0] for action in parser._actions if not set(action.option_strings) & common]


@pytest.mark.parametrize(
    "command, path, heading, table",
    [
        ("migrate_images", "docs/migrate_images.md", "## Options", True),
        ("finalize_images", "docs/lifecycle.md", "## `python manage.py finalize_images`", True),
        # "Options as for finalize_images": its synopsis only.
        ("restore_images_json", "docs/lifecycle.md", "## `python manage.py restore_images_json`", False),
    ],
)
def test_the_docs_list_every_option(command, path, heading, table):
    section = doc_section(path, heading)
    synopsis = "\n".join(code_block(section))
    assert synopsis.startswith(f"{command} ")
    options = own_options(command)
    assert options
    for option in options:
        assert re.search(rf"(\[|\| ){option}\b", synopsis), f"{option} missing from the synopsis in {path}"
        if table:
            assert f"| `{option}" in section, f"{option} missing from the options table in {path}"
