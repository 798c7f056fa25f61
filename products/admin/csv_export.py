"""The image list's CSV export: the rows of the list as it is filtered, searched and ordered."""

import csv
import io

CSV_COLUMNS = ["image_id", "product_id", "product_title", "position", "order", "is_label", "url", "created_at"]


def csv_lines(images):
    """The images as CSV lines, header first, read in chunks. A text cell a spreadsheet would take for a
    formula (=, +, -, @ first) is quoted with a leading apostrophe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line(CSV_COLUMNS)
    for image in images.iterator(chunk_size=2000):
        yield line(
            [
                image.pk,
                image.product_id,
                _cell(image.product.title),
                "price label" if image.is_label else f"photo {image.position}",
                image.order,
                image.is_label,
                _cell(image.url),
                image.created_at.isoformat(),
            ]
        )


def _cell(text: str) -> str:
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
