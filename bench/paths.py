"""Where the benchmark reads and writes: the repository it measures, its results, its cache.

This module owns the folders that ``bench.run``, ``bench.browser`` and ``bench.server`` all
use, so none of them has to import another for a path.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
#: Generated worlds and built databases, reused between runs (git-ignored).
CACHE_DIR = RESULTS_DIR / "tmp"
#: Where ``--quick`` writes by default, so a smoke run never replaces the published numbers.
QUICK_DIR = CACHE_DIR / "quick"
DOCS_DIR = ROOT / "docs"
