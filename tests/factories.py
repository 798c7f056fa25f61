import factory
from factory.django import DjangoModelFactory

from products.models import Product


class ProductFactory(DjangoModelFactory):
    """A product; create it inside the tenant's schema (``schema_context``)."""

    class Meta:
        model = Product

    title = factory.Sequence(lambda n: f"Product {n}")
    images = factory.LazyFunction(list)
