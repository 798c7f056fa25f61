"""Lists that stay quick on a seller with millions of rows (docs/benchmark.md, "The admin").

- The count stops at ``COUNT_BOUND``: past it, the list says "about N" (the planner's estimate) instead of
  counting two million rows on every page.
- Past the bound, pages beyond ``COUNT_BOUND`` rows are not served: a deep OFFSET walks every row before it
  (page 19,000 of a seller's images took 3.9 s). The list says so, and a search, a filter, going to a product
  by id or sorting the other way reaches any row.
- The costly columns (counts, positions: correlated subqueries) are computed for the page's rows only: the
  page is found by its ids first, without them, then its rows are read with them (PostgreSQL computes a
  SELECT list for every row an OFFSET skips)."""

import json
import math

from django.contrib import messages
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.utils.functional import cached_property

COUNT_BOUND = 10_000


class Grouped(int):
    """A count that prints with thousands separators ("19,607") wherever a template or a message shows it,
    and still compares and computes as the int it is."""

    def __str__(self) -> str:
        return f"{int(self):,}"


class BoundedPaginator(Paginator):
    """Counts up to ``COUNT_BOUND`` rows, estimates past it, and serves the pages within the bound only."""

    @cached_property
    def count(self) -> int:
        counted = self.object_list.order_by().values("pk")[: COUNT_BOUND + 1].count()
        if counted <= COUNT_BOUND:
            return Grouped(counted)
        return Grouped(max(COUNT_BOUND + 1, _planner_estimate(self.object_list)))

    @property
    def estimated(self) -> bool:
        return self.count > COUNT_BOUND

    @cached_property
    def num_pages(self) -> int:
        pages = super().num_pages
        return min(pages, self.reachable_pages) if self.estimated else pages

    @property
    def reachable_pages(self) -> int:
        return math.ceil(COUNT_BOUND / self.per_page)


def _planner_estimate(queryset) -> int:
    """How many rows PostgreSQL's planner expects the query to return (from table statistics: no scan)."""
    plan = json.loads(queryset.order_by().explain(format="json"))
    return int(plan[0]["Plan"]["Plan Rows"])


class PageFirstChangeList(ChangeList):
    """The page's ids first, without the costly columns; then the page's rows, with them."""

    def get_results(self, request):
        paginator = self.model_admin.get_paginator(request, self.queryset, self.list_per_page)
        reachable = getattr(paginator, "reachable_pages", None)
        self.pages_capped = bool(reachable) and paginator.estimated
        if self.pages_capped and self.page_num > paginator.num_pages:
            messages.info(
                request,
                f"Only the first {paginator.num_pages:,} pages are shown: search, filter or sort the other way to "
                "reach the others.",
            )
            self.page_num = paginator.num_pages
        super().get_results(request)
        self.count_is_estimate = getattr(paginator, "estimated", False)
        if self.multi_page and not (self.show_all and self.can_show_all):
            page_ids = list(self.result_list.values_list("pk", flat=True))
            rows = self.apply_select_related(self.root_queryset).filter(pk__in=page_ids).in_bulk()
            self.result_list = [rows[pk] for pk in page_ids if pk in rows]
