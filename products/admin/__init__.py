"""A seller's catalogue in the seller admin (/sellers/<schema>/admin/): browse products and their
images. The changes offered (make or clear a label, move a photo up or down) all go through the
image service (products/images.py) and are logged in the admin history.

Django's admin autodiscovery imports this package: here the ModelAdmins are registered with the
seller admin site, and the public admin's seller picker is given its figures."""

from django.contrib import admin

from products.admin.image_admin import ProductImageAdmin
from products.admin.product_admin import ProductAdmin
from products.admin.seller_overview import seller_figures
from products.models import Product, ProductImage
from stoflow.tenants.sites import seller_admin_site

seller_admin_site.register(Product, ProductAdmin)
seller_admin_site.register(ProductImage, ProductImageAdmin)
# The public admin's seller picker and each seller's index show the migration campaign (stoflow.tenants.sites
# never imports products).
admin.site.seller_figures = seller_figures
seller_admin_site.seller_figures = seller_figures
