"""What an image URL may be: one rule, read in SQL by the migration (``migration/source.py``) and
asked of PostgreSQL by the image service (``images.py``), so a URL the service stores is one the
migration would read back unchanged.

Trimmed of surrounding whitespace; then no control character (C0, DEL, C1) anywhere, and either
http(s) with a host or a site-relative path ("/media/..."; "//host/..." is not site-relative).
The patterns are PostgreSQL regular expressions (``[:space:]`` is a POSIX class).
"""

from psycopg import sql

from stoflow.raw_sql import fetch_rows

URL_WHITESPACE = " \t\n\r\f\v"  # trimmed from both ends
# The same characters as a PostgreSQL escape string, so the SQL text itself holds no control character
# (the report shows each query as it ran).
URL_WHITESPACE_SQL = sql.SQL("E'{}'".format("".join(c if c == " " else f"\\x{ord(c):02x}" for c in URL_WHITESPACE)))
_CONTROL_CHARACTERS = r"\x01-\x1f\x7f-\x9f"  # C0, DEL, C1, as the body of a bracket expression
URL_CONTROL_CHARACTER = f"[{_CONTROL_CHARACTERS}]"
# The whole rule in one case-insensitive pattern (~*): http(s) and a host character, or "/" and no second
# "/", then no control character anywhere. One pattern per URL: three cost the migration 0.9 s more on
# 588,210 entries. A refused URL holding a control character is refused for that, else for its scheme.
URL_ACCEPTED = rf"^(https?://[^/[:space:]{_CONTROL_CHARACTERS}]|/[^/{_CONTROL_CHARACTERS}])[^{_CONTROL_CHARACTERS}]*$"
CONTROL_CHARACTER_PROBLEM = "holds a control character"
SCHEME_PROBLEM = "is neither an http(s) URL nor a site-relative path"

_URL_PROBLEM = """SELECT CASE
    WHEN %(url)s ~* %(accepted)s THEN NULL
    WHEN %(url)s ~ %(control)s THEN %(control_problem)s
    ELSE %(scheme_problem)s
END"""


def url_problem(url: str) -> str | None:
    """Why the rule refuses ``url`` (already trimmed), or None; PostgreSQL reads the patterns."""
    ((problem,),) = fetch_rows(
        sql.SQL(_URL_PROBLEM),
        {
            "url": url,
            "accepted": URL_ACCEPTED,
            "control": URL_CONTROL_CHARACTER,
            "control_problem": CONTROL_CHARACTER_PROBLEM,
            "scheme_problem": SCHEME_PROBLEM,
        },
    )
    return problem
