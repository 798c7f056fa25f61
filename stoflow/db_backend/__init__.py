"""The project's database backend (``ENGINE = "stoflow.db_backend"``): see ``base``."""
