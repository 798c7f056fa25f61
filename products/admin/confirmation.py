"""A label change's confirmation page, whichever page asks (the product page, the image list, a bulk change's
undo), and what a bulk change did, in a line."""

import re

from products.admin.label_jobs import Outlook, progress
from products.admin.paging import Grouped
from products.models import LabelJob


def typed_number_matches(request, expected: int) -> bool:
    """The number typed to confirm a large change: "3280", "3,280" and "3 280" all read 3,280."""
    typed = re.sub(r"[\s,.]", "", request.POST.get("confirm_count", ""))
    return typed.isdigit() and int(typed) == expected


def confirmation_context(outlook: Outlook, fields, typed_wrong: bool) -> dict:
    """The confirmation page of a label change, whichever page it comes from (the list, the product page)."""
    wording = LABEL_ACTIONS[outlook.action]
    changing, selected = outlook.changing, outlook.selected
    return {
        "title": wording["title"][selected != 1],
        "summary": confirmation_summary(changing, selected, outlook.held_back),
        "afterwards": outlook.afterwards,
        "changing": Grouped(changing),
        "plans": outlook.plans,
        "more": Grouped(max(selected - len(outlook.plans), 0)),
        "confirm": wording["confirm"][changing != 1],
        "fields": fields,
        "typed": outlook.typed,
        "typed_wrong": typed_wrong,
        "batched": outlook.typed,
    }


def confirmation_summary(changing: int, selected: int, held_back: int = 0) -> str:
    if selected == 1:
        what = "The product changes as below." if changing else "The product stays as it is."
    elif changing == selected:
        what = f"All {selected:,} products selected change as below."
    else:
        what = f"{changing:,} of the {selected:,} products selected change as below; the others stay as they are."
    if held_back:
        what += (
            f" {held_back:,} {'is' if held_back == 1 else 'are'} held back from marketplaces and left as "
            f"{'it is' if held_back == 1 else 'they are'}."
        )
    return what + (" Nothing is written until you confirm." if changing else "")


def job_summary(job: LabelJob) -> str:
    """What a bulk change did, in a line."""
    done = progress(job)
    if done.done < done.total:
        return f"{done.done:,} of {done.total:,} products done so far."
    parts = [f"{done.changed:,} product{'s' if done.changed != 1 else ''} changed"]
    if done.unchanged:
        parts.append(f"{done.unchanged:,} already as asked")
    if done.refused:
        parts.append(f"{done.refused:,} refused (listed on the page)")
    return f"{LABEL_ACTIONS[job.action]['done']}: {', '.join(parts)}."


LABEL_ACTIONS = {
    "make_label": {
        "title": ("Make the price label: what changes", "Make price labels: what changes"),
        "confirm": ("Yes, make this label", "Yes, make these labels"),
        "done": "Price labels made",
    },
    "clear_label": {
        "title": ("Clear the price label: what changes", "Clear price labels: what changes"),
        "confirm": ("Yes, clear this label", "Yes, clear these labels"),
        "done": "Price labels cleared",
    },
    "undo": {
        "title": ("Undo the label change: what changes", "Undo label changes: what changes"),
        "confirm": ("Yes, undo this change", "Yes, undo these changes"),
        "done": "Label changes undone",
    },
}
