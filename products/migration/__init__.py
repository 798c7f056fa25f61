"""The image migration engine: legacy ``products.images`` JSON to ``product_images`` rows.

See docs/architecture.md for what each module holds and may import.
"""
