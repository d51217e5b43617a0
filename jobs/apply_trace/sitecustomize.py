"""Measurement only: time stamps of the apply phase's calls, pieces and tasks (``jobs.apply_trace``).

Put this folder first on PYTHONPATH and set ``SMART_TRACE_DIR``; every Python
process of the run (driver with the in-process stand-in server, Spark's Python
workers) then appends ``trace-<pid>.txt`` there:

- ``call t0 t1``: one HTTP attempt of the client (``LLMClient._attempt``), as the client sees it;
- ``srv t0 t1``: the stand-in server from a request's dispatch to its answer's write;
- ``piece t0 t1 rows cpu``: one ``process_batch`` (``cpu``: its thread's CPU seconds);
- ``task t0 t1 rows``: one apply task.

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
                for frame in apply(batches):
                    rows += len(frame)
                    yield frame
                _record("task", started, time.time(), rows)
                _flush()

            SMART_apply.__annotations__ = apply.__annotations__
            return SMART_apply

        module._make_apply = traced_make_apply

    _PATCHES = {"smart_spark.llm.client": _patch_client, "smart_spark.spark.apply": _patch_apply,
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
