"""The `frp` command line (see cli/main.py).

Polars allocates through jemalloc, which polars sets to keep freed pages for half a
second before giving them back. A command is a few short bursts of large frames, so
pages freed by one phase inflated the peak of the next (a 1M-customer `frp simulate` by
about 100 MiB). Measured on that run: 50 ms of decay gives the memory back without
costing time, while 0 ms (give back at once) adds 0.7 s of page faults. The setting
must be in place before polars is imported, which is why it lives here. A value the
person running `frp` chose is kept; polars' own default, inherited from a parent
process that imported polars (a test, the benchmark), is not a choice and is replaced.
"""

import os

_POLARS_DEFAULT = "dirty_decay_ms:500,muzzy_decay_ms:1000"
_FRP_DEFAULT = "dirty_decay_ms:50,muzzy_decay_ms:0"

if os.environ.get("_RJEM_MALLOC_CONF", _POLARS_DEFAULT) == _POLARS_DEFAULT:
    os.environ["_RJEM_MALLOC_CONF"] = _FRP_DEFAULT
