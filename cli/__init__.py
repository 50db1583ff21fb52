"""The `frp` command line (see cli/main.py).

Polars allocates through jemalloc, which keeps freed pages for half a second before it
gives them back (polars' own setting). A command is a few short bursts of large frames,
so pages freed by one phase inflated the peak of the next (a 1M-customer `frp simulate`
by about 100 MiB). Measured on that run: 20-50 ms of decay gives the memory back
without costing time, while 0 ms (give back at once) adds 0.7 s of page faults. The
setting must be in place before polars is imported, which is why it lives here; a
value the person running `frp` set is kept.
"""

import os

os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:50,muzzy_decay_ms:0")
