"""HTML bits of the image admin, built with format_html so every value is escaped."""

from django.utils.html import format_html

LABEL_BADGE_TEXT = "Price label"
SHORT_URL_LENGTH = 32  # longer addresses are shortened in the lists


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


def short_url(url: str) -> str:
    """An image's address as a list shows it: the host (if any) and the file name, the middle left out, the
    whole address in the tooltip; a phone's column stays narrow, and the file is what tells images apart."""
    shown = url
    if len(url) > SHORT_URL_LENGTH:
        path = url.split("?", 1)[0]
        host = ""
        if "://" in path:
            host, _, path = path.split("://", 1)[1].partition("/")
        shown = f"{host}/…/{path.rstrip('/').rsplit('/', 1)[-1]}"
    return format_html('<span class="stoflow-url" title="{}">{}</span>', url, shown)
