"""What an image URL may be: one rule, read in SQL by the migration (``migration/source.py``) and by
``listing_photos`` (``selectors.py``), and in Python by the image service (``images.py``), so a URL the
service stores is one the migration would read back unchanged and a marketplace may receive.

Trimmed of surrounding whitespace; then no refused character anywhere, and either http(s) with a host or a
site-relative path ("/media/..."; "//host/..." is not site-relative). Refused characters: the backslash
(browsers read "/\\host" as "//host", another host) and the invisible ones, Unicode categories Cc (C0, DEL,
C1), Cf (format: soft hyphen, zero-width spaces, bidi embeddings, overrides and isolates, the BOM...), Zl and
Zp (line and paragraph separators). The host may not start with a space of any kind (Zs).

The rule is one regular expression in the syntax PostgreSQL's (ARE) and Python's ``re`` read alike: ``\\A``
and ``\\Z``, bracket expressions whose every character is a ``\\u``/``\\U`` escape, the scheme spelled in
both cases (``[Hh]``) so neither engine's case folding is involved. PostgreSQL's regular expressions know
no Unicode categories, so the characters come from Python's ``unicodedata``; a test pins that both engines
give every URL the same verdict.
"""

import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from itertools import groupby

from psycopg import sql

URL_WHITESPACE = " \t\n\r\f\v"  # trimmed from both ends
# The same characters as a PostgreSQL escape string, so the SQL text itself holds no control character
# (the report shows each query as it ran).
URL_WHITESPACE_SQL = sql.SQL("E'{}'".format("".join(c if c == " " else f"\\x{ord(c):02x}" for c in URL_WHITESPACE)))
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
REFUSED_CHARACTERS = "\\"  # refused besides those categories
HOST_START_REFUSED_CATEGORIES = frozenset({"Zs"})  # besides the refused characters and "/"
REFUSED_CHARACTER_PROBLEM = "holds a backslash or an invisible character (control, format, line or paragraph separator)"
SCHEME_PROBLEM = "is neither an http(s) URL nor a site-relative path"


@dataclass(frozen=True)
class UrlPatterns:
    """The rule as regular expressions, the same text for PostgreSQL (``~``) and Python (``re.search``)."""

    accepted: str  # matches exactly the URLs the rule accepts
    refused_character: str  # matches one refused character: a refused URL holding one is refused for that


# Built on first use, not at import: every process (each manage.py command) would pay it otherwise.
@cache
def url_patterns() -> UrlPatterns:
    """The rule's two patterns (module docstring)."""
    by_category = _code_points_by_category(REFUSED_CATEGORIES | HOST_START_REFUSED_CATEGORIES)
    refused = set(map(ord, REFUSED_CHARACTERS)).union(*(by_category[c] for c in REFUSED_CATEGORIES))
    host_start_refused = refused.union({ord("/")}, *(by_category[c] for c in HOST_START_REFUSED_CATEGORIES))
    refused_class, not_slash = _bracket_body(refused), _bracket_body(refused | {ord("/")})
    # One pattern per URL: three cost the migration 0.9 s more on 588,210 entries.
    return UrlPatterns(
        accepted=(
            rf"\A([Hh][Tt][Tt][Pp][Ss]?://[^{_bracket_body(host_start_refused)}]|/[^{not_slash}])[^{refused_class}]*\Z"
        ),
        refused_character=f"[{refused_class}]",
    )


def url_problem(url: str) -> str | None:
    """Why the rule refuses ``url`` (already trimmed), or None; Python's ``re`` reads the patterns."""
    accepted, refused_character = _compiled_patterns()
    if accepted.search(url):
        return None
    return REFUSED_CHARACTER_PROBLEM if refused_character.search(url) else SCHEME_PROBLEM


@cache
def _compiled_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    patterns = url_patterns()
    return re.compile(patterns.accepted), re.compile(patterns.refused_character)


# The code points of the categories the rule reads, by Unicode version, as Python's unicodedata has them (first, last):
# reading the category of all 1,114,112 code points costs 0.27 s of CPU, a quarter of the whole command on the
# 1x set, in every process that renders the migration's SQL. Another version is read from unicodedata;
# tests/test_migration_rules.py reads the running version's again and compares.
CATEGORIES_BY_VERSION = {
    "14.0.0": {  # Python 3.11
        "Cc": ((0x0000, 0x001F), (0x007F, 0x009F)),
        "Cf": (
            (0x00AD, 0x00AD),
            (0x0600, 0x0605),
            (0x061C, 0x061C),
            (0x06DD, 0x06DD),
            (0x070F, 0x070F),
            (0x0890, 0x0891),
            (0x08E2, 0x08E2),
            (0x180E, 0x180E),
            (0x200B, 0x200F),
            (0x202A, 0x202E),
            (0x2060, 0x2064),
            (0x2066, 0x206F),
            (0xFEFF, 0xFEFF),
            (0xFFF9, 0xFFFB),
            (0x110BD, 0x110BD),
            (0x110CD, 0x110CD),
            (0x13430, 0x13438),
            (0x1BCA0, 0x1BCA3),
            (0x1D173, 0x1D17A),
            (0xE0001, 0xE0001),
            (0xE0020, 0xE007F),
        ),
        "Zl": ((0x2028, 0x2028),),
        "Zp": ((0x2029, 0x2029),),
        "Zs": (
            (0x0020, 0x0020),
            (0x00A0, 0x00A0),
            (0x1680, 0x1680),
            (0x2000, 0x200A),
            (0x202F, 0x202F),
            (0x205F, 0x205F),
            (0x3000, 0x3000),
        ),
    },
    "15.0.0": {  # Python 3.12
        "Cc": (
            (0x0000, 0x001F),
            (0x007F, 0x009F),
        ),
        "Cf": (
            (0x00AD, 0x00AD),
            (0x0600, 0x0605),
            (0x061C, 0x061C),
            (0x06DD, 0x06DD),
            (0x070F, 0x070F),
            (0x0890, 0x0891),
            (0x08E2, 0x08E2),
            (0x180E, 0x180E),
            (0x200B, 0x200F),
            (0x202A, 0x202E),
            (0x2060, 0x2064),
            (0x2066, 0x206F),
            (0xFEFF, 0xFEFF),
            (0xFFF9, 0xFFFB),
            (0x110BD, 0x110BD),
            (0x110CD, 0x110CD),
            (0x13430, 0x1343F),
            (0x1BCA0, 0x1BCA3),
            (0x1D173, 0x1D17A),
            (0xE0001, 0xE0001),
            (0xE0020, 0xE007F),
        ),
        "Zl": ((0x2028, 0x2028),),
        "Zp": ((0x2029, 0x2029),),
        "Zs": (
            (0x0020, 0x0020),
            (0x00A0, 0x00A0),
            (0x1680, 0x1680),
            (0x2000, 0x200A),
            (0x202F, 0x202F),
            (0x205F, 0x205F),
            (0x3000, 0x3000),
        ),
    },
}


def _code_points_by_category(categories: frozenset[str]) -> dict[str, set[int]]:
    """The code points of each of ``categories``: from CATEGORIES_BY_VERSION when it has this Unicode version's."""
    known = CATEGORIES_BY_VERSION.get(unicodedata.unidata_version, {})
    if categories <= known.keys():
        return {
            category: {code_point for first, last in known[category] for code_point in range(first, last + 1)}
            for category in categories
        }
    return read_categories(categories)


def read_categories(categories: frozenset[str]) -> dict[str, set[int]]:
    """The code points of each of ``categories`` in Python's Unicode database, in one pass over them all."""
    found: dict[str, set[int]] = {category: set() for category in categories}
    for code_point in range(0x110000):
        category = unicodedata.category(chr(code_point))
        if category in found:
            found[category].add(code_point)
    return found


def _bracket_body(code_points: set[int]) -> str:
    """``code_points`` as the inside of a bracket expression: runs as ranges, every character an escape,
    so none is special (``]``, ``-``, ``\\``, ``^``) and the SQL text holds no invisible character."""
    runs = groupby(enumerate(sorted(code_points)), key=lambda pair: pair[1] - pair[0])
    parts = []
    for _, run in runs:
        first, *rest = (code_point for _, code_point in run)
        parts.append(_escape(first) + (f"-{_escape(rest[-1])}" if rest else ""))
    return "".join(parts)


def _escape(code_point: int) -> str:
    return f"\\u{code_point:04x}" if code_point <= 0xFFFF else f"\\U{code_point:08x}"
