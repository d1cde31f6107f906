"""Benchmarks of scratchattn's headline kernels against PyTorch and the memory-bandwidth floor.

Run ``python -m benchmarks`` (see ``benchmarks/__main__.py`` for the options). The package holds the timing harness
(``harness.py``), the cases (``ops.py``), the first-call measurements (``firstcall.py``) and the report writer
(``report.py``); ``notes.md`` records what was tried to reach the targets and is copied into ``docs/benchmarks.md``.
Importing it imports nothing heavy: ``python -m benchmarks.firstcall`` times ``import scratchattn`` from a clean start.
"""
