from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "stoflow.tenants"
    label = "tenants"
    verbose_name = "Sellers and migration runs"
