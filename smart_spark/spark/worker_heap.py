"""Keep the cyclic garbage collector from stalling an apply task's calls in flight.

A Python worker of the apply phase holds everything pandas, pyarrow, openai,
pydantic and aiohttp create at import: hundreds of thousands of objects that
live as long as the process. Every full (generation 2) collection traverses all
of them while holding the GIL, so the worker's event loop, and with it every
call in flight, waits: measured with ``jobs.apply_trace`` on 20,000 rows, two
such collections per task of 10,000 rows, 0.34-0.36 s in all on a quiet machine
(the longest 0.18 s; up to 0.36 s when loaded). ``gc.freeze()``
moves the objects alive now into a generation the collector never traverses;
objects created later (the rows, answers and frames of each piece) are
collected as before.
"""

from __future__ import annotations

import gc

_settled = False


def settle_heap(collect: bool = False) -> None:
    """Freeze the objects alive now, once per process.

    ``collect``: first run a full collection so no garbage is frozen with them
    (the warm-up, off the critical path, does; an apply task that starts cold
    skips it, keeping at most the garbage of its imports).
    """
    global _settled
    if _settled:
        return
    _settled = True
    if collect:
        gc.collect()
    gc.freeze()
