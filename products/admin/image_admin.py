"""The seller admin's images: the list (a number searches ids, other text the URLs; the CSV export), the image
page, and the bulk label changes: the actions' confirmation page, the job that changes the products a batch at
a time with its progress, the list of bulk changes and the undo of one (products/admin/label_jobs.py)."""

import re

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from products.admin import label_jobs
from products.admin.confirmation import confirmation_context, job_summary, typed_number_matches
from products.admin.csv_export import csv_lines
from products.admin.filters import IsLabelFilter, ProductFilter
from products.admin.html import label_badge, short_url, thumbnail
from products.admin.label_jobs import (
    Outlook,
    advance,
    clear_label_outlook,
    make_label_outlook,
    progress,
    start_job,
    undo_outlook,
)
from products.admin.label_plans import describe_change, several_per_product
from products.admin.mixins import ADMIN_CSS, BrowseOnly, QuickLists, SellerHistory
from products.admin.selectors import image_title, images_with_position
from products.models import LabelJob, Product

BIGINT_MAX = 2**63 - 1  # ids are PostgreSQL bigints: a longer number is no id
JOB_URL = "products_productimage_label_job"


class ProductImageAdmin(QuickLists, SellerHistory, BrowseOnly, admin.ModelAdmin):
    list_display = ["id", "thumbnail", "product_link", "position", "order", "url_text"]
    list_filter = [ProductFilter, IsLabelFilter]
    list_select_related = ["product"]
    search_fields = ["url"]  # shows the search box; get_search_results decides what a term matches
    search_help_text = (
        "A number finds that product's images (and the image with that id); other text, the addresses holding it."
    )
    fields = ["thumbnail", "product_link", "position", "order", "full_url", "created_at", "updated_at"]
    readonly_fields = fields
    actions = ["make_label", "clear_label"]

    class Media:
        css = ADMIN_CSS

    def get_queryset(self, request):
        return images_with_position(super().get_queryset(request))

    def get_urls(self):
        def view(function):
            return self.admin_site.admin_view(function)

        return [
            path("export.csv", view(self.export_csv_view), name="products_productimage_export"),
            path("label-changes/", view(self.label_jobs_view), name="products_productimage_label_jobs"),
            path("label-changes/<int:job_id>/", view(self.label_job_view), name=JOB_URL),
            path("label-changes/<int:job_id>/advance/", view(self.advance_job_view), name=f"{JOB_URL}_advance"),
            path("label-changes/<int:job_id>/undo/", view(self.undo_job_view), name=f"{JOB_URL}_undo"),
            *super().get_urls(),
        ]

    def export_csv_view(self, request):
        """The image list as it is filtered, searched and ordered, every page of it, as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            images = self.get_changelist_instance(request).queryset
        except IncorrectLookupParameters:
            return HttpResponseRedirect(reverse(f"{self.admin_site.name}:products_productimage_changelist"))
        response = StreamingHttpResponse(csv_lines(images), content_type="text/csv; charset=utf-8")
        name = f"{request.tenant.schema_name}-product-images.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    def get_search_results(self, request, queryset, search_term):
        """A number is an id: the product's images, and the image with that id (not every URL holding the
        digits); anything else is looked for in the URLs (the trigram index of migration 0006 serves it)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if re.fullmatch(r"[0-9]+", term):
            number = int(term)
            if number > BIGINT_MAX:
                return queryset.none(), False
            return queryset.filter(Q(product_id=number) | Q(pk=number)), False
        return queryset.filter(url__icontains=term), False

    def changelist_view(self, request, extra_context=None):
        context = {"title": "Product images", "jobs_url": self._url("products_productimage_label_jobs")}
        return super().changelist_view(request, {**context, **(extra_context or {})})

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context.update(title=image_title(obj.product_id, obj.position, obj.is_label), subtitle=None)
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description="Image")
    def thumbnail(self, image):
        return thumbnail(image.url, image_title(image.product_id, image.position, image.is_label))

    @admin.display(description="Product", ordering="product_id")
    def product_link(self, image):
        url = reverse(f"{self.admin_site.name}:products_product_change", args=[image.product_id])
        return format_html('<a href="{}">{}: {}</a>', url, image.product_id, image.product)

    @admin.display(description="Position")
    def position(self, image):
        return label_badge(True) if image.is_label else f"Photo {image.position}"

    @admin.display(description="URL", ordering="url")
    def url_text(self, image):
        return short_url(image.url)

    @admin.display(description="URL")
    def full_url(self, image):
        return format_html('<span class="stoflow-url">{}</span>', image.url)

    # --- bulk label changes ---------------------------------------------------------------------------

    @admin.action(description="Make the selected images their products' price labels", permissions=["change"])
    def make_label(self, request, queryset):
        several = several_per_product(queryset)
        if several:
            self.message_user(request, several.message, messages.ERROR)
            return None
        return self._bulk_change(request, "make_label", queryset, make_label_outlook(queryset))

    @admin.action(description="Clear the price label of the selected images' products", permissions=["change"])
    def clear_label(self, request, queryset):
        return self._bulk_change(request, "clear_label", queryset, clear_label_outlook(queryset))

    def _bulk_change(self, request, action: str, queryset, outlook: Outlook):
        """The confirmation page first; once confirmed (the number of products typed, past the bound), the job:
        run at once when small, else a batch per request from its page."""
        if request.POST.get("post") != "yes" or not outlook.changing:
            return self._confirm(request, outlook, self._action_fields(request, action))
        if outlook.typed and not typed_number_matches(request, outlook.changing):
            return self._confirm(request, outlook, self._action_fields(request, action), typed_wrong=True)
        job = start_job(action, request.user.get_username(), selected=queryset)
        return self._run_or_show(request, job)

    def _run_or_show(self, request, job: LabelJob):
        if progress(job).total <= label_jobs.TYPED_CONFIRMATION_ABOVE:
            while advance(job, self._logger(request)):
                pass
            self.message_user(request, job_summary(job), messages.SUCCESS)
        return HttpResponseRedirect(self._url(JOB_URL, job.pk))

    def _logger(self, request):
        def log(item, change):
            product = Product(pk=item.product_id)
            self.log_seller_change(request, product, describe_change(change))

        return log

    def _action_fields(self, request, action: str) -> list[tuple[str, str]]:
        """What the confirmation form posts back to the list: the action and the selection, as Django's own."""
        fields = [("action", action), ("select_across", request.POST.get("select_across", "0")), ("post", "yes")]
        fields += [(helpers.ACTION_CHECKBOX_NAME, pk) for pk in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)]
        return fields

    def _confirm(self, request, outlook: Outlook, fields, typed_wrong: bool = False, job: LabelJob | None = None):
        """The confirmation page: posted back to the list (an action), or to a bulk change's undo."""
        context = {
            **self.admin_site.each_context(request),
            **confirmation_context(outlook, fields, typed_wrong),
            "opts": self.opts,
            "form_url": self._url(f"{JOB_URL}_undo", job.pk) if job else "",
            "back_url": self._url(JOB_URL, job.pk) if job else request.get_full_path(),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/products/productimage/label_confirmation.html", context)

    # --- the bulk changes' pages ---------------------------------------------------------------------

    def label_jobs_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        jobs = [(job, progress(job)) for job in LabelJob.objects.select_related("undoes")[:50]]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Bulk label changes",
            "jobs": [(job, done, self._url(JOB_URL, job.pk)) for job, done in jobs],
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/products/productimage/label_jobs.html", context)

    def label_job_view(self, request, job_id: int):
        if not self.has_view_permission(request):
            raise PermissionDenied
        job = self._job(job_id)
        done = progress(job)
        refused = job.items.filter(outcome="refused").order_by("product_id")[:20]
        undone_by = job.undone_by.first()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Bulk label change {job.pk}: {job.get_action_display()}",
            "job": job,
            "progress": done,
            "percent": round(100 * done.done / done.total) if done.total else 100,
            "refused": refused,
            "undone_by": undone_by,
            "may_change": self.has_change_permission(request),
            "may_undo": job.finished_at and done.changed and undone_by is None and job.action != "undo",
            "advance_url": self._url(f"{JOB_URL}_advance", job.pk),
            "undo_url": self._url(f"{JOB_URL}_undo", job.pk),
            "jobs_url": self._url("products_productimage_label_jobs"),
            "undone_by_url": self._url(JOB_URL, undone_by.pk) if undone_by else "",
            "undoes_url": self._url(JOB_URL, job.undoes_id) if job.undoes_id else "",
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/products/productimage/label_job.html", context)

    def advance_job_view(self, request, job_id: int):
        """One batch of the job (POST): JSON for the page's script, else back to the job's page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        job = self._job(job_id)
        advance(job, self._logger(request))
        done = progress(job)
        if request.headers.get("Accept") == "application/json":
            finished = done.done == done.total
            return JsonResponse({**done.as_numbers, "finished": finished, "summary": job_summary(job)})
        return HttpResponseRedirect(self._url(JOB_URL, job.pk))

    def undo_job_view(self, request, job_id: int):
        """Undo a whole bulk change: confirmed first, as any label change; then a job of its own."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        job = self._job(job_id)
        if job.undone_by.exists() or job.action == "undo":
            self.message_user(request, "This bulk change was already undone.", messages.INFO)
            return HttpResponseRedirect(self._url(JOB_URL, job.pk))
        outlook = undo_outlook(job)
        fields = [("post", "yes")]
        if request.method != "POST" or request.POST.get("post") != "yes":
            return self._confirm(request, outlook, fields, job=job)
        if outlook.typed and not typed_number_matches(request, outlook.changing):
            return self._confirm(request, outlook, fields, typed_wrong=True, job=job)
        undo = start_job("undo", request.user.get_username(), undoes=job)
        return self._run_or_show(request, undo)

    def _job(self, job_id: int) -> LabelJob:
        job = LabelJob.objects.select_related("undoes").filter(pk=job_id).first()
        if job is None:
            raise Http404("No such bulk label change.")
        return job

    def _url(self, name: str, *args) -> str:
        return reverse(f"{self.admin_site.name}:{name}", args=args)
