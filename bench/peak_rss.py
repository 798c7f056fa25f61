"""Run ``manage.py`` with the given arguments and write its peak RSS (kB) to $PEAK_RSS_FILE at exit.

The kernel's figure for a child (wait4's ru_maxrss) starts from the parent's size
at fork, and the benchmark process is large; VmHWM is reset by exec, so the
command reads its own.
"""

import atexit
import os
import runpy
import sys
from pathlib import Path


def write_peak_rss() -> None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            Path(os.environ["PEAK_RSS_FILE"]).write_text(line.split()[1])


ROOT = Path(__file__).resolve().parent.parent
atexit.register(write_peak_rss)
sys.path[0] = str(ROOT)  # as when manage.py runs itself
sys.argv = [str(ROOT / "manage.py"), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
