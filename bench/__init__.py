"""Benchmarks for vk-eci (not tests).

Each module is a scenario that can be run on its own, e.g. ``.venv/bin/python -m bench.daemon_burst --pods 500``;
``.venv/bin/python -m bench`` (``make bench``) runs them all in sequence at the sizes documented in
docs/benchmarks.md. ``python -m bench --list`` lists the scenarios.
"""
