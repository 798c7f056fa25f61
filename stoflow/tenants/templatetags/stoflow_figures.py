"""The admin's one number format: whole numbers with a comma between thousands (1,234,567), as the
migration's reports write them; a figure not known is a dash."""

from django import template

register = template.Library()

UNKNOWN = "\N{EM DASH}"


@register.filter
def figure(value) -> str:
    if value is None or value == "":
        return UNKNOWN
    return f"{int(value):,}"


@register.filter
def seconds_ago(value) -> str:
    """A duration in seconds as a support agent reads it: "12 s", "3 min", "2 h"."""
    seconds = int(value)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
