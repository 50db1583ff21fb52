"""The `frp` command line (see cli/main.py).

Polars allocates through jemalloc, which by default keeps freed pages for a while
before giving them back. A command is one short burst of large frames, so that only
inflates its peak memory (a 1M-customer `frp simulate` by about 200 MiB); give pages
back at once unless the person running `frp` has tuned jemalloc themselves. It must be
set before polars is imported, which is why it lives here.
"""

import os

os.environ.setdefault(
    "_RJEM_MALLOC_CONF", "background_thread:true,dirty_decay_ms:0,muzzy_decay_ms:0"
)
