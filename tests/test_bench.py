"""The benchmark keeps working: the world generator makes valid, deterministic input, and
the quick size runs end to end into a temporary folder (never the published docs).

The quick run takes about 15 s (10k customers x 2,000 partners, one repeat).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from engine.columns import CUSTOMER_SCHEMA, PARTNER_SCHEMA
from store.files import read_customers, read_partners

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `bench` is run from the repository, not installed
    sys.path.insert(0, str(ROOT))

from bench import run as bench_run  # noqa: E402
from bench.world import ensure_world, make_customers, make_partners  # noqa: E402


def test_world_is_deterministic_and_has_the_engine_columns() -> None:
    a, b = make_customers(2_000, seed=5), make_customers(2_000, seed=5)
    assert a.equals(b)
    assert not a.equals(make_customers(2_000, seed=6))
    assert dict(a.schema) == CUSTOMER_SCHEMA
    p = make_partners(300, seed=5)
    assert p.equals(make_partners(300, seed=5))
    assert dict(p.schema) == PARTNER_SCHEMA
    assert a["tenant_id"].n_unique() == a.height
    assert p["partner_id"].n_unique() == p.height


def test_world_is_skewed_like_the_brief() -> None:
    c = make_customers(20_000, seed=1)
    p = make_partners(2_000, seed=1)
    shares = c["country"].value_counts(sort=True)["count"] / c.height
    assert shares[0] > 0.2 and shares[-1] < 0.01  # a few big countries, a long tail
    assert 0.05 < (c["seats"] < 150).mean() < 0.25
    assert 0.15 < c["gateway"].mean() < 0.25
    assert c["referral_consent"].mean() > 0.9
    assert c["workloads"].list.contains("dynamics-365").any()
    assert 0.85 < p["referral_ready"].mean() < 0.95
    assert p["capacity"].min() >= 5 and p["capacity"].max() <= 500
    assert p["capacity"].median() < p["capacity"].mean()  # skewed
    assert p["countries"].list.len().max() > 1


def test_world_files_are_valid_input_with_plain_list_types(tmp_path: Path) -> None:
    world = ensure_world(1_000, 200, seed=2, cache=tmp_path)
    partners = read_partners(world.partners)
    customers = read_customers(world.customers)
    assert (partners.height, customers.height) == (200, 1_000)
    schema = pq.read_schema(world.customers)
    assert schema.names == list(CUSTOMER_SCHEMA)
    assert str(schema.field("workloads").type) == "list<element: string>"
    assert str(schema.field("tenant_id").type) == "string"


def _positive(value: object, where: str) -> None:
    assert isinstance(value, int | float) and not isinstance(value, bool), where
    assert value > 0, f"{where} = {value}"


def test_quick_benchmark_runs_and_reports_every_figure(tmp_path: Path) -> None:
    published = ROOT / "docs" / "performance.md"
    before = published.stat().st_mtime_ns if published.exists() else None
    results, docs = tmp_path / "results", tmp_path / "docs"
    lines: list[str] = []
    code = bench_run.main(
        [
            "--quick",
            "--naive-customers",
            "500",
            "--results",
            str(results),
            "--docs",
            str(docs),
            "--cache",
            str(tmp_path / "cache"),
        ],
        log=lines.append,
    )
    assert code == 0, "\n".join(lines)
    assert any("[10k] repeat 1/1 round-robin" in line for line in lines)  # progress shown

    latest = json.loads((results / "latest.json").read_text())
    dated = list(results.glob("bench-*.json"))
    assert len(dated) == 1 and json.loads(dated[0].read_text()) == latest

    _positive(latest["machine"]["cores"], "cores")
    assert latest["machine"]["python"] and latest["machine"]["packages"]["polars"]
    _positive(latest["machine"]["rss_floor_mib"], "rss_floor_mib")
    [size] = latest["sizes"]
    assert (size["label"], size["customers"], size["partners"]) == ("10k", 10_000, 2_000)

    for name in ("floor", "startup"):
        for key in ("median_s", "min_s", "rss_mib_max", "rss_mib_median", "cpu_s_median"):
            _positive(size[name][key], f"{name}.{key}")
    _positive(size["floor"]["groups"], "floor.groups")
    assert set(size["policies"]) == set(bench_run.POLICIES)
    for policy, r in size["policies"].items():
        for key in (
            "median_s",
            "min_s",
            "ratio_to_floor",
            "ratio_to_floor_min",
            "rss_mib_max",
            "rss_mib_median",
            "cpu_s_median",
            "placed",
            "css",
        ):
            _positive(r[key], f"{policy}.{key}")
        assert r["placed"] + r["css"] == size["customers"]
        assert sum(r["reasons"].values()) == size["customers"]
        # The child's own peak, not the benchmark process's (see bench.run.LAUNCHER).
        assert r["rss_mib_max"] > latest["machine"]["rss_floor_mib"]

    split = size["split"]  # issue #13: round robin with split 2, beside round robin
    for key in ("median_s", "min_s", "rss_mib_max", "over_round_robin"):
        _positive(split[key], f"split.{key}")
    assert any(t["target"] == "round-robin split 2 time vs no split" for t in latest["targets"])
    o = size["optimal_vs_round_robin"]
    _positive(o["time_ratio"], "optimal time ratio")
    _positive(o["placed_optimal"], "placed_optimal")
    _positive(o["placed_round_robin"], "placed_round_robin")
    assert o["placed_difference"] == o["placed_optimal"] - o["placed_round_robin"] >= 0

    c = size["naive_comparison"]
    assert c["equal"] is True and c["mismatched_rows"] == 0 and c["first_mismatch"] is None
    assert (c["customers"], c["partners"]) == (500, 2_000)
    for key in ("speedup_same_customers", "speedup_full_size"):
        _positive(c[key], key)
    for who in ("engine", "naive"):
        _positive(c[who]["median_s"], f"{who}.median_s")
        _positive(c[who]["throughput_per_s"], f"{who}.throughput_per_s")
    _positive(size["engine_full"]["throughput_per_s"], "engine_full.throughput_per_s")
    for phase, seconds in size["phases_median_s"].items():
        _positive(seconds, f"phase {phase}")

    assert latest["browser"] is None  # --quick skips the browser part
    assert latest["unit"] is None  # --quick skips the timings moved out of unit tests
    assert len(latest["targets"]) == 10  # with the split run (#13)
    for t in latest["targets"]:
        _positive(t["value"], t["target"])
        assert isinstance(t["met"], bool) and t["measured_at"] == "10k"
        assert t["status"].startswith("met" if t["met"] else "not met")

    page = (docs / "performance.md").read_text()
    assert "## Targets (issues #6 and #14)" in page and "| 10,000 |" in page
    spec = json.loads((docs / "performance.vl.json").read_text())
    assert spec["data"]["values"]
    has_png = importlib.util.find_spec("vl_convert") is not None
    assert (docs / "performance.png").exists() == has_png
    assert ("performance.png)" in page) == has_png

    again = tmp_path / "again"
    assert (
        bench_run.main(
            ["--render-only", "--results", str(results), "--docs", str(again)], log=lines.append
        )
        == 0
    )
    assert (again / "performance.md").read_text() == page

    after = published.stat().st_mtime_ns if published.exists() else None
    assert after == before, "the test must not rewrite docs/performance.md"


def test_targets_are_computed_from_the_numbers() -> None:
    def size(label: str, customers: int, rr: float, floor: float, rss: float) -> dict:
        pol = {p: {"median_s": rr, "rss_mib_max": rss} for p in bench_run.POLICIES}
        return {
            "label": label,
            "customers": customers,
            "policies": {
                **pol,
                "round-robin": {**pol["round-robin"], "ratio_to_floor": rr / floor},
            },
            "naive_comparison": {"speedup_full_size": 150.0},
            "optimal_vs_round_robin": {"time_ratio": 4.0},
        }

    got = {
        t["target"]: t
        for t in bench_run.targets([size("10k", 10_000, 9, 1, 10), size("1m", 10**6, 1.5, 1, 600)])
    }
    status = {k: v["status"] for k, v in got.items()}
    assert status == {
        "round-robin end to end vs floor (goal)": "met",
        "round-robin end to end vs floor (limit)": "met",
        "round-robin end to end time": "met",
        "engine throughput vs naive reference": "met",
        "weighted time vs round-robin": "met",
        "least-loaded time vs round-robin": "met",
        "optimal time vs round-robin": "not met",
        "peak RSS of any policy (round-robin, goal)": "not met",
        "peak RSS of any policy (round-robin, limit)": "not met",
    }
    room = {**size("1m", 10**6, 1.5, 1, 450), "label": "1m room", "size": "1m"}
    room["world_name"] = "room"
    both = bench_run.targets([size("1m", 10**6, 1.5, 1, 300), room])
    rss = {(t["world"], t["goal"]): t["met"] for t in both if "peak RSS" in t["target"]}
    assert rss[("bound", "< 400 MiB")] is True and rss[("bound", "< 500 MiB")] is True
    assert rss[("room", "< 400 MiB")] is False and rss[("room", "< 500 MiB")] is True
    assert all(t["measured_at"] == "1m" for t in both)
    assert [t["target"] for t in both if t["world"] == "room"][0].endswith("world with room")
    only_small = bench_run.targets([size("10k", 10_000, 9, 1, 10)])
    assert all("at 10k only" in t["status"] for t in only_small)


@pytest.mark.parametrize("argv", [["--sizes", "2m"], ["--repeats", "0"]])
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        bench_run.parse_args(argv)


def test_quick_defaults_never_touch_the_published_results() -> None:
    cfg = bench_run.parse_args(["--quick"])
    assert cfg.sizes == ["10k"] and cfg.repeats == 1
    assert bench_run.QUICK_DIR in (cfg.results, *cfg.results.parents)
    assert bench_run.QUICK_DIR in cfg.docs.parents
    full = bench_run.parse_args([])
    assert full.sizes == ["10k", "100k", "1m"] and full.repeats == 3
    assert full.docs == ROOT / "docs" and full.results == ROOT / "bench" / "results"


def test_the_browser_part_is_on_by_default_and_can_be_skipped() -> None:
    assert bench_run.parse_args([]).browser is True
    assert bench_run.parse_args(["--no-browser"]).browser is False
    assert bench_run.parse_args(["--quick"]).browser is False
    assert bench_run.parse_args(["--quick", "--browser"]).browser is True
    with pytest.raises(SystemExit):
        bench_run.parse_args(["--browser", "--no-browser"])


def _browser(sim: float, cold: float, warm: float, cold_url: float) -> dict:
    def timing(median: float) -> dict:
        return {"median_s": median, "min_s": median, "max_s": median, "runs_s": [median]}

    return {
        "goal_s": 2.0,
        "repeats": 1,
        "chromium": "Chromium 1.0",
        "playwright": "1.0",
        "streamlit": "1.0",
        "database": {
            "cohort_file": "c.parquet",
            "referrals": 1_013_850,
            "build_s": None,
            "file_mib": 230.0,
        },
        "simulate": {"customers": 10_000, "policies": ["round-robin", "least-loaded"]}
        | timing(sim),
        "simulate_first": timing(sim + 0.25),
        "fairness_cold": timing(cold),
        "fairness_warm": timing(warm),
        "fairness_cold_url": timing(cold_url),
        "fairness_warm_url": timing(warm),
        "start_up_url": timing(1.25),
    }


def test_browser_targets_are_computed_from_the_medians() -> None:
    got = bench_run.browser_targets(_browser(1.5, 2.5, 0.5, 4.0))
    assert [(t["met"], t["status"], t["measured_at"]) for t in got] == [
        (True, "met", "browser"),
        (True, "met", "browser"),
        (False, "not met", "browser"),
        (True, "met", "browser"),
        (False, "not met", "browser"),
    ]
    assert "1,013,850 referrals" in got[2]["target"]
    assert bench_run.browser_targets(None) == []
    assert bench_run.browser_targets({"error": "no chromium"}) == []


def test_the_page_shows_the_browser_timings_or_why_there_are_none() -> None:
    from bench.report import browser_section

    text = "\n".join(browser_section(_browser(1.5, 2.5, 0.5, 4.0)))
    assert "1,013,850 committed referrals" in text and "| 2.50 s | 2.50 s | 2.50 s |" in text
    assert "Baseline" in text and "| 1.25 s |" in text and "| 1.75 s |" in text
    assert "Not measured" in "\n".join(browser_section(None))
    assert "no chromium" in "\n".join(browser_section({"error": "no chromium"}))
