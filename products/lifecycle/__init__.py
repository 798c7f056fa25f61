"""The lifecycle after the migration: finalize_images drops a tenant's legacy JSON column once the gate lets
it, restore_images_json puts it back.

It reads the migration engine (its source SQL and its validation decide the gate) and the engine never reads
it: a tenant's migration does not depend on what can later be done with the column.
"""
