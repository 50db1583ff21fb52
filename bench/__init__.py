"""Benchmarks of FRP Assign: a seeded synthetic world (``bench.world``) and the
measuring run (``bench.run``, ``python -m bench.run`` or ``make bench``).

Results go to ``bench/results/`` (JSON) and ``docs/performance.md``; generated worlds
are cached in ``bench/results/tmp/`` (git-ignored).
"""
