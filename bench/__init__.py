"""outbox's benchmarks: ``python -m bench [--quick] [--only NAME] [--database-url URL] [--json PATH]``.

Each measure is one module (write_path, bulk_import, throughput, latency, fanout, memory,
scale_out) with ``run(ctx) -> MeasureResult``; harness.py holds what they share, receiver.py the
HTTP receiver they deliver to, ceiling.py the raw HTTP clients. Benchmarks print numbers; nothing
here asserts a timing.
"""
