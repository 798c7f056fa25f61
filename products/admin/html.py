"""HTML bits of the image admin, built with format_html so every value is escaped."""

from django.utils.html import format_html

LABEL_BADGE_TEXT = "Price label"


def thumbnail(url: str | None, alt: str) -> str:
    """The image itself, lazily loaded; when it does not load, a note naming its file takes its place."""
    if not url:
        return "-"
    file_name = url.rstrip("/").rsplit("/", 1)[-1] or url
    return format_html(
        '<span class="stoflow-thumb">'
        '<img src="{}" alt="{}" loading="lazy" width="64" height="64" '
        'onerror="this.hidden = true; this.nextElementSibling.hidden = false;">'
        '<span class="stoflow-thumb-fallback" hidden>image not available: {}</span>'
        "</span>",
        url,
        alt,
        file_name,
    )


def label_badge(is_label: bool) -> str:
    return format_html('<span class="stoflow-label-badge">{}</span>', LABEL_BADGE_TEXT) if is_label else ""
