"""When an image may have been created: one range, read in SQL by the migration (``migration/source.py``)
and checked in Python by the image service (``images.py``), so the service stores only timestamps the
migration would read back from the JSON mirror, and every stored one can be read by Django.

Outside it, time zones push a timestamp past what Python reads: '0001-01-01T00:30:00+01:00' is 1 BC in
UTC (every ORM read of the row raises DataError, and the mirror's text loses the era), and
'9999-12-31T23:30:00-01:00' is year 10000.
"""

from datetime import UTC, datetime

FIRST_YEAR = 1900
LAST_YEAR = 2100
EARLIEST_CREATED_AT = datetime(FIRST_YEAR, 1, 1, tzinfo=UTC)
LATEST_CREATED_AT_EXCLUDED = datetime(LAST_YEAR + 1, 1, 1, tzinfo=UTC)  # 2100-12-31T23:59:59.999999Z is the last


def created_at_accepted(created_at: datetime) -> bool:
    """Whether a timezone-aware ``created_at`` falls in the range (compared as instants, whatever its zone)."""
    return EARLIEST_CREATED_AT <= created_at < LATEST_CREATED_AT_EXCLUDED
