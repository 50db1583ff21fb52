"""Giving memory back between a command's phases (cli/memory.py).

Dropping a library's pages must pick only what is safe to drop (read-only, unchanged
copies of the file), must actually lower the process's resident memory, and must never
change what the compiled loop computes afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.schema
from cli.memory import _clean_mappings, release_libraries, trim_heap

ROOT = Path(__file__).resolve().parent.parent

_SMAPS = """\
7f0000000000-7f0000001000 r--p 00000000 08:01 42 /venv/llvmlite/binding/libllvmlite.so
Rss:                   4 kB
Private_Clean:         4 kB
Private_Dirty:         0 kB
7f0000001000-7f0000009000 r-xp 00001000 08:01 42 /venv/llvmlite/binding/libllvmlite.so
Rss:                  32 kB
Private_Dirty:         0 kB
7f0000009000-7f000000a000 r--p 00009000 08:01 42 /venv/llvmlite/binding/libllvmlite.so
Rss:                   4 kB
Private_Dirty:         4 kB
7f000000a000-7f000000b000 rw-p 0000a000 08:01 42 /venv/llvmlite/binding/libllvmlite.so
Rss:                   4 kB
Private_Dirty:         0 kB
7f000000b000-7f000000c000 r-xp 00000000 08:01 43 /venv/polars/_polars_runtime.abi3.so
Rss:                   4 kB
Private_Dirty:         0 kB
7f000000c000-7f000000d000 r--p 00000000 00:00 0
Rss:                   4 kB
Private_Dirty:         0 kB
"""


def test_only_the_librarys_unchanged_read_only_mappings_are_picked() -> None:
    """Not the relocated mapping (a dirty page), not a writable one, not another
    library's, not anonymous memory."""
    got = _clean_mappings(["libllvmlite"], _SMAPS.splitlines(keepends=True))
    assert got == [(0x7F0000000000, 0x7F0000001000), (0x7F0000001000, 0x7F0000009000)]
    assert _clean_mappings(["libortools"], _SMAPS.splitlines()) == []
    both = _clean_mappings(["libllvmlite", "_polars_runtime"], _SMAPS.splitlines())
    assert both == [*got, (0x7F000000B000, 0x7F000000C000)]


def test_a_library_not_loaded_is_nothing_to_release() -> None:
    assert release_libraries(["no-such-library-frp"]) == 0
    assert release_libraries([]) == 0
    assert trim_heap() in (True, False)


#: In a fresh interpreter: warm the kernels, run a compiled what-if, drop LLVM's pages,
#: run it again; resident memory before and after the drop, and both runs' rows.
_DROP_THEN_RUN = """
import json, sys
from bench.world import make_customers, make_partners
from cli.memory import release_loaded
from engine import jit
from engine.assign import simulate
from engine.rules import load_rules

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

jit.warm()
partners, customers = make_partners(150, 5, 40), make_customers(3_000, 5)
rules = load_rules()
def run():
    return {p: simulate(partners, customers, rules, p, compiled=True).output().to_dicts()
            for p in ("round-robin", "weighted", "least-loaded", "optimal")}
before = run()
resident = rss_mib()
dropped = release_loaded()
after_drop = rss_mib()
json.dump({"dropped": dropped, "resident": resident, "after_drop": after_drop,
           "same": run() == before}, sys.stdout)
"""


def test_dropping_llvms_pages_lowers_memory_and_changes_no_run() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _DROP_THEN_RUN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    got = json.loads(done.stdout)
    assert got["dropped"] > 50 * 2**20, got
    # libllvmlite.so keeps some 60-70 MiB resident once the kernels are loaded.
    assert got["resident"] - got["after_drop"] > 30, got
    assert got["same"], "a compiled run after the drop gave other rows"


@settings(max_examples=30, deadline=None)
@given(
    names=st.lists(st.one_of(st.none(), st.text(max_size=6)), max_size=40),
    part_rows=st.integers(1, 12),
)
def test_counting_in_parts_counts_the_same_as_at_once(
    names: list[str | None], part_rows: int
) -> None:
    frame = pl.DataFrame({"name": names}, schema={"name": pl.String}).lazy()
    sums = [
        pl.col("name").is_null().sum().alias("missing"),
        pl.col("name").str.contains(r"^\s*$").sum().alias("blank"),
    ]
    whole = frame.select(sums).collect()
    old = engine.schema._CHECK_PART_ROWS
    engine.schema._CHECK_PART_ROWS = part_rows
    try:
        parted = engine.schema._count_in_parts(frame, sums)
    finally:
        engine.schema._CHECK_PART_ROWS = old
    assert parted.rows() == whole.rows()
    assert parted.schema == whole.schema


def _customers(n: int) -> pl.DataFrame:
    """``n`` clean customers, as a Parquet file of them reads."""
    return pl.DataFrame(
        {
            "tenant_id": [f"T{i}" for i in range(n)],
            "name": [f"Customer {i}" for i in range(n)],
            "country": ["DE"] * n,
            "language": ["de"] * n,
            "seats": list(range(1, n + 1)),
            "workloads": [["teams"]] * n,
            "gateway": [i % 2 == 0 for i in range(n)],
            "contact_email": [f"it{i}@example.com" for i in range(n)],
        }
    )


def test_the_columns_only_checked_find_their_problems_in_any_part(
    tmp_path: Path, monkeypatch
) -> None:
    """Names and contact emails are counted in parts (here of 3 rows) while the kept
    columns are read: a clean file reads whole, and a bad one names each bad cell in its
    own part, shown trimmed."""
    from engine.schema import InputError
    from store.files import read_customers

    monkeypatch.setattr(engine.schema, "_CHECK_PART_ROWS", 3)
    n = 10
    clean = _customers(n)
    path = tmp_path / "customers.parquet"
    clean.write_parquet(path)
    read = read_customers(path, columns=["tenant_id", "seats"])
    assert read.equals(clean.select("tenant_id", "seats"))

    bad = clean.with_columns(
        pl.when(pl.int_range(n) == 7).then(pl.lit(" ")).otherwise("name").alias("name"),
        pl.when(pl.int_range(n) == 4)
        .then(pl.lit("nobody"))
        .otherwise("contact_email")
        .alias("contact_email"),
    )
    bad.write_parquet(path)
    with pytest.raises(InputError) as caught:
        read_customers(path, columns=["tenant_id"])
    problems = [(p.row, p.column, p.value) for p in caught.value.problems]
    assert problems == [(5, "contact_email", "nobody"), (8, "name", "")]


def test_the_columns_only_checked_are_counted_while_the_caller_works(tmp_path: Path) -> None:
    """``read_customers_meanwhile`` returns the kept columns of a file whose contact email
    is bad (or whose key repeats), and its check then raises the error ``read_customers``
    raises; a problem in a kept column is raised at once, listing the email's too."""
    from engine.schema import InputError
    from store.files import read_customers, read_customers_meanwhile

    n = 6
    good = _customers(n)
    path = tmp_path / "customers.parquet"
    good.with_columns(
        pl.when(pl.int_range(n) == 2)
        .then(pl.lit("nobody"))
        .otherwise("contact_email")
        .alias("contact_email")
    ).write_parquet(path)
    kept, checked = read_customers_meanwhile(path, columns=["tenant_id", "seats"])
    assert kept.equals(good.select("tenant_id", "seats"))
    with pytest.raises(InputError) as later:
        checked()
    with pytest.raises(InputError) as at_once:
        read_customers(path, columns=["tenant_id", "seats"])
    assert str(later.value) == str(at_once.value)
    assert [(p.row, p.column) for p in later.value.problems] == [(3, "contact_email")]

    good.with_columns(
        pl.when(pl.int_range(n) == 2)
        .then(pl.lit("nobody"))
        .otherwise("contact_email")
        .alias("contact_email"),
        pl.when(pl.int_range(n) == 4).then(pl.lit("XX")).otherwise("country").alias("country"),
    ).write_parquet(path)
    with pytest.raises(InputError) as kept_bad:
        read_customers_meanwhile(path, columns=["tenant_id", "seats"])
    got = [(p.row, p.column) for p in kept_bad.value.problems]
    assert got == [(3, "contact_email"), (5, "country")]

    # A repeated key is found meanwhile too, and named with both rows.
    good.with_columns(pl.Series("tenant_id", ["T0", "T1", "T2", "T1", "T4", "T5"])).write_parquet(
        path
    )
    kept, checked = read_customers_meanwhile(path, columns=["tenant_id"])
    assert kept.height == n
    with pytest.raises(InputError) as repeated:
        checked()
    assert [(p.row, p.column) for p in repeated.value.problems] == [(4, "tenant_id")]
    assert "also on row 2" in str(repeated.value)


def test_one_chunk_joins_each_column_in_place() -> None:
    """The read's kept columns are joined a column at a time: same values, one chunk."""
    parts = [
        pl.DataFrame({"id": [f"T{i}" for i in range(a, a + 3)], "n": [a, a + 1, a + 2]})
        for a in (0, 3, 6)
    ]
    frame = pl.concat(parts, rechunk=False)
    assert frame.get_column("id").n_chunks() == 3
    expected = frame.rechunk()
    engine.schema._one_chunk(frame)
    assert [frame.get_column(c).n_chunks() for c in frame.columns] == [1, 1]
    assert frame.equals(expected)


#: Text around an id that a read trims: ASCII and Unicode whitespace, or none.
_SPACE = st.sampled_from(["", " ", "\t", "  ", "\u00a0", "\u2003", "\u3000"])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(_SPACE, _SPACE), min_size=1, max_size=12))
def test_text_kept_as_read_unless_a_cell_has_space_around_it(
    tmp_path_factory, spaces: list[tuple[str, str]]
) -> None:
    """A text column is kept as read and trimmed only when some cell needs it; either way
    the ids are what trimming every cell gives (the check it replaced)."""
    from store.files import read_customers

    n = len(spaces)
    ids = [f"{before}T{i}{after}" for i, (before, after) in enumerate(spaces)]
    path = tmp_path_factory.mktemp("ids") / "customers.parquet"
    _customers(n).with_columns(pl.Series("tenant_id", ids)).write_parquet(path)
    read = read_customers(path, columns=["tenant_id"])
    assert read.get_column("tenant_id").to_list() == [i.strip() for i in ids]
    assert read.get_column("tenant_id").to_list() == [f"T{i}" for i in range(n)]
