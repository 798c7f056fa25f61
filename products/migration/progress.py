"""Rich progress bars for the migration: one per tenant and one overall."""

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from products.migration.batches import Progress as ProgressHooks


class RichProgress(ProgressHooks):
    """Per-tenant and overall bars (products done, ETA); draws on a terminal only."""

    def __init__(self, stream, tenants: int):
        self._bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(file=stream),
            transient=True,
        )
        self._overall = self._bars.add_task("all tenants", total=tenants)
        self._tasks = {}

    def __enter__(self):
        self._bars.start()
        return self

    def __exit__(self, *exc_info):
        self._bars.stop()

    def start_tenant(self, schema: str, products: int) -> None:
        self._tasks[schema] = self._bars.add_task(schema, total=products)

    def advance(self, schema: str, products: int) -> None:
        self._bars.advance(self._tasks[schema], products)

    def finish_tenant(self, schema: str) -> None:
        self._bars.remove_task(self._tasks.pop(schema))
        self._bars.advance(self._overall, 1)
