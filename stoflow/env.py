"""Reading settings from the environment: flags, integers and lists, with an error naming the variable.

``SettingsError`` is what ``stoflow.settings`` raises when the environment cannot make working
settings (a missing ``DJANGO_SECRET_KEY`` outside debug, a flag that is neither 1 nor 0, ...);
``manage.py`` prints it as one line instead of a traceback.
"""

import os

from django.core.exceptions import ImproperlyConfigured

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


class SettingsError(ImproperlyConfigured):
    """The environment does not give working settings; the message names the variable and what to do."""


def env_flag(name: str, default: bool) -> bool:
    """``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off`` (any case); unset or empty: ``default``."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise SettingsError(f"{name}={os.environ[name]!r}: expected 1 or 0 (or true/false, yes/no, on/off).")


def env_int(name: str, default: int) -> int:
    """A non-negative integer; unset or empty: ``default``."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise SettingsError(f"{name}={os.environ[name]!r}: expected a whole number of 0 or more.")
    return int(value)


def env_list(name: str, default: list[str]) -> list[str]:
    """Comma-separated values, blanks dropped; unset: ``default`` (set but empty: an empty list)."""
    if name not in os.environ:
        return list(default)
    return [item.strip() for item in os.environ[name].split(",") if item.strip()]
