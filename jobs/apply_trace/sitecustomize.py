"""Measurement only: time stamps of the apply phase's calls, pieces and tasks (``jobs.apply_trace``).

Put this folder first on PYTHONPATH and set ``SMART_TRACE_DIR``; every Python
process of the run (driver with the in-process stand-in server, Spark's Python
workers) then appends ``trace-<pid>.txt`` there:

- ``call t0 t1``: one HTTP attempt of the client (``LLMClient._attempt``), as the client sees it;
- ``srv t0 t1``: the stand-in server from a request's dispatch to its answer's write;
- ``piece t0 t1 rows cpu``: one ``process_batch`` (``cpu``: its thread's CPU seconds);
- ``task t0 t1 rows``: one apply task;
- ``proc t0 age``: when a Python worker began an apply (or warm-up) task, and how old the process was then;
- ``warm t0 t1``: the executor warm-up's imports (``smart_spark.spark.warmup``) in that worker;
- ``warmstart t``: when the driver asked for the warm-up;
- ``lag t seconds``: with ``SMART_TRACE_LAG`` set, every 5 ms how late the client's event loop ran a callback that was due;
- ``gc t0 t1 generation``: one cyclic garbage collection (it holds the GIL: every thread of the process waits).

Nothing is patched without ``SMART_TRACE_DIR``. Read the files with
``python -m jobs.apply_trace <dir>``.
"""

import os

if os.environ.get("SMART_TRACE_DIR"):
    import atexit
    import importlib.abc
    import sys
    import threading
    import time

    _DIR = os.environ["SMART_TRACE_DIR"]

    def _process_age():
        """Seconds since this process (a forked Python worker too) started, from /proc."""
        with open("/proc/self/stat") as stat:
            started = int(stat.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime") as uptime:
            return float(uptime.read().split()[0]) - started

    _BUFFER: list = []
    _LOCK = threading.Lock()

    def _record(kind, *values):
        _BUFFER.append((kind,) + values)
        if len(_BUFFER) >= 2000:
            _flush()

    def _flush():
        with _LOCK:
            taken = _BUFFER[:]  # records appended by other threads meanwhile stay for the next flush
            del _BUFFER[: len(taken)]
            lines = "".join(" ".join([r[0]] + [repr(v) for v in r[1:]]) + "\n" for r in taken)
            if lines:
                with open(os.path.join(_DIR, f"trace-{os.getpid()}.txt"), "a") as out:
                    out.write(lines)

    atexit.register(_flush)

    def _patch_client(module):
        attempt = module.LLMClient._attempt

        async def traced(self, sdk, spec, prompt):
            started = time.time()
            try:
                return await attempt(self, sdk, spec, prompt)
            finally:
                _record("call", started, time.time())

        module.LLMClient._attempt = traced

    def _patch_apply(module):
        process_batch = module.process_batch

        def traced(spec, keys, texts, **options):
            started, cpu = time.time(), time.thread_time()
            try:
                return process_batch(spec, keys, texts, **options)
            finally:
                _record("piece", started, time.time(), len(keys), time.thread_time() - cpu)
                _flush()  # Python workers may exit without atexit

        module.process_batch = traced

    def _patch_server(module):
        dispatch = module.StandInServer._dispatch

        def traced(self, method, path, content_type, raw):
            started = time.time()
            reply = dispatch(self, method, path, content_type, raw)
            on_sent = reply.on_sent

            def sent():
                _record("srv", started, time.time())
                if on_sent is not None:
                    on_sent()

            reply.on_sent = sent
            return reply

        module.StandInServer._dispatch = traced

    def _patch_model(module):
        make_apply = module._make_apply

        def traced_make_apply(shipped, batch_size):
            apply = make_apply(shipped, batch_size)

            def SMART_apply(batches):  # noqa: N802 - Spark shows the name
                started, rows = time.time(), 0
                _record("proc", started, _process_age())
                for frame in apply(batches):
                    rows += len(frame)
                    yield frame
                _record("task", started, time.time(), rows)
                _flush()

            SMART_apply.__annotations__ = apply.__annotations__
            return SMART_apply

        module._make_apply = traced_make_apply

    def _patch_warmup(module):
        warm = module.import_apply_modules

        def traced(batches):
            started = time.time()
            _record("proc", started, _process_age())
            yield from warm(batches)
            _record("warm", started, time.time())
            _flush()

        module.import_apply_modules = traced
        start_warmup = module.start_warmup

        def traced_start(spark, rows):
            _record("warmstart", time.time())
            _flush()
            return start_warmup(spark, rows)

        module.start_warmup = traced_start

    def _probe_lag(loop, every=0.005):
        """Every 5 ms, how late the loop runs a callback due now: the wait any answer's callback sees."""
        def probe(due):
            now = loop.time()
            _record("lag", time.time(), now - due)
            loop.call_at(now + every, probe, now + every)

        loop.call_soon_threadsafe(lambda: probe(loop.time()))

    def _patch_loop(module):
        run_forever = module._run_forever

        def traced(loop):
            if os.environ.get("SMART_TRACE_LAG"):
                _probe_lag(loop)
            run_forever(loop)

        module._run_forever = traced

    _PATCHES = {"smart_spark.llm.loop": _patch_loop, "smart_spark.spark.warmup": _patch_warmup,
                "smart_spark.llm.client": _patch_client, "smart_spark.spark.apply": _patch_apply,
                "smart_spark.testing.server": _patch_server, "smart_spark.spark.model": _patch_model}

    class _PatchAfterImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name not in _PATCHES:
                return None
            for finder in sys.meta_path:
                found = None if finder is self else getattr(finder, "find_spec", lambda *a: None)(name, path, target)
                if found is not None:
                    execute = found.loader.exec_module

                    def exec_module(module, _execute=execute, _name=name):
                        _execute(module)
                        _PATCHES[_name](module)

                    found.loader.exec_module = exec_module
                    return found
            return None

    sys.meta_path.insert(0, _PatchAfterImport())

    import gc

    _GC_STARTED = [0.0]

    def _on_gc(phase, info):
        if phase == "start":
            _GC_STARTED[0] = time.time()
        else:
            _record("gc", _GC_STARTED[0], time.time(), info["generation"])

    gc.callbacks.append(_on_gc)
    os.register_at_fork(after_in_child=_BUFFER.clear)  # a forked worker does not repeat its parent's records
