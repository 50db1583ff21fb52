"""``docs/performance.md`` and its chart, regenerated from a benchmark report (``bench.run``).

Every figure in the page comes from the report; nothing is typed in by hand. The chart is
an Altair (Vega-Lite) spec saved next to the page as ``performance.vl.json``, rendered to
``performance.png`` with vl-convert-python when it is installed (the page says so when it
is not).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PAGE = "performance.md"
PNG = "performance.png"
SPEC = "performance.vl.json"
#: The world with room's chart, beside the capacity-bound world's.
ROOM_PNG = "performance-room.png"
ROOM_SPEC = "performance-room.vl.json"


def _world(s: dict[str, Any]) -> str:
    return s.get("world_name", "bound")


def _label(s: dict[str, Any]) -> str:
    """A size's row label: its customers, and the world when it is the one with room."""
    return _n(s["customers"]) + (" (room)" if _world(s) != "bound" else "")


def _s(seconds: float) -> str:
    if seconds >= 100:
        return f"{seconds:.0f} s"
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 0.1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.0f} ms"


def _x(r: float) -> str:
    if r >= 100:
        return f"{r:,.0f}x"
    return f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


def _rate(per_s: float) -> str:
    if per_s >= 1e6:
        return f"{per_s / 1e6:.2f} M/s"
    if per_s >= 1e3:
        return f"{per_s / 1e3:.1f} k/s"
    return f"{per_s:.0f} /s"


def _mib(m: float) -> str:
    return f"{m:,.0f} MiB"


def _n(n: int) -> str:
    return f"{n:,}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def chart_rows(report: dict[str, Any], world: str = "bound") -> list[dict[str, Any]]:
    """Median seconds per (series, cohort size) in one world: the floor, each policy, the
    engine, and each policy's baseline when one was measured."""
    rows = []

    def add(series: str, customers: int, seconds: float) -> None:
        rows.append({"series": series, "customers": customers, "seconds": seconds})

    for s in report["sizes"]:
        if _world(s) != world:
            continue
        for p, b in (s.get("baseline") or {}).items():
            add(f"baseline {p}", s["customers"], b["median_s"])
        n = s["customers"]
        add("floor (DuckDB group-by)", n, s["floor"]["median_s"])
        for p in report["policies"]:
            add(f"frp simulate {p}", n, s["policies"][p]["median_s"])
        add("engine in process (round-robin)", n, s["engine_full"]["median_s"])
    return rows


def chart_spec(report: dict[str, Any], world: str = "bound") -> dict[str, Any]:
    import altair as alt

    rows = chart_rows(report, world)
    room = " with room" if world != "bound" else ""
    order = list(dict.fromkeys(r["series"] for r in rows))
    sizes = sorted({r["customers"] for r in rows})
    chart = (
        alt.Chart(alt.Data(values=rows))
        .mark_line(point=True)
        .encode(
            x=alt.X(
                "customers:Q",
                scale=alt.Scale(type="log"),
                axis=alt.Axis(values=sizes, format="~s"),
                title="customers (log scale)",
            ),
            y=alt.Y("seconds:Q", scale=alt.Scale(type="log"), title="median seconds (log scale)"),
            color=alt.Color("series:N", sort=order, title=None),
            tooltip=["series:N", "customers:Q", alt.Tooltip("seconds:Q", format=".3f")],
        )
        .properties(
            width=420,
            height=260,
            title=f"Time against cohort size ({report['sizes'][0]['partners']:,} partners{room})",
        )
        .configure_legend(orient="bottom", columns=2)
    )
    return chart.to_dict()


def write_chart(report: dict[str, Any], folder: Path) -> list[Path]:
    """Per world measured: the spec (always) and the PNG (when vl-convert-python is
    installed)."""
    written: list[Path] = []
    worlds = dict.fromkeys(_world(s) for s in report["sizes"])
    for world, spec_name, png_name in (("bound", SPEC, PNG), ("room", ROOM_SPEC, ROOM_PNG)):
        if world not in worlds:
            continue
        spec = chart_spec(report, world)
        spec_path = folder / spec_name
        spec_path.write_text(json.dumps(spec, indent=2) + "\n")
        written.append(spec_path)
        try:
            import vl_convert
        except ImportError:
            (folder / png_name).unlink(missing_ok=True)  # never an image of older numbers
            continue
        png_path = folder / png_name
        png_path.write_bytes(vl_convert.vegalite_to_png(vl_spec=spec, scale=1.0))
        written.append(png_path)
    return written


def render(report: dict[str, Any], chart: str | None) -> str:
    """The page. ``chart``: "png" (image and spec), "spec" (spec only) or None (no chart)."""
    sizes = report["sizes"]
    policies = report["policies"]
    lines = [
        *_method(report),
        *_machine(report["machine"], report),
        *_targets(report),
        *browser_section(report.get("browser")),
        *_end_to_end(sizes, policies),
        *_before_after(sizes, policies),
        *_first_run(sizes, policies),
        *_against_naive(sizes),
        *_optimal(sizes),
        *_phases(sizes),
        *_unit(report.get("unit")),
        *_chart(chart, sizes),
        *_running(),
    ]
    return "\n".join(lines)


def _partners(report: dict[str, Any]) -> int:
    sizes = report["sizes"]
    return sizes[0]["partners"] if sizes else report["config"]["partners"]


def _method(report: dict[str, Any]) -> list[str]:
    """The page's head: what the benchmark measures, and how."""
    m = report["machine"]
    cfg = report["config"]
    w = report.get("world") or {}
    return [
        "# Performance",
        "",
        "<!-- Generated by `python -m bench.run` (`make bench`) from "
        "bench/results/latest.json; do not edit by hand. -->",
        "",
        "What the benchmark measures, and how (the code is `bench/`):",
        "",
        f"- **World.** `bench/world.py` generates a seeded synthetic world (seed {cfg['seed']}): "
        f"{_partners(report):,} partners and cohorts of "
        + ", ".join(_n(n) for n in sorted({s["customers"] for s in report["sizes"]}))
        + f" customers over {w.get('countries', 'about 40')} countries with Zipf-like demand, "
        "languages by country, popular and rare workloads (and some FastTrack does not "
        "cover), skewed seats and capacities"
        + (f" ({w['capacity_range'][0]} to {w['capacity_range'][1]})" if w else "")
        + (
            f", {1 - w['referral_ready_share']:.0%} of partners not Referral Ready, "
            f"{w['gateway_share']:.0%} Gateway customers"
            if w
            else ""
        )
        + ". Files are Parquet with exactly the engine's columns.",
        *_room_note(report),
        "- **End to end** is `frp simulate --partners P --customers C --policy X --out OUT` "
        "run as a subprocess (the whole process: start-up, Parquet in, validation, the run, "
        "Parquet out), one per policy.",
        "- **The floor** is the least any tool must do with the same file: a subprocess "
        "that imports DuckDB, reads the customers Parquet and runs "
        f"`{report['floor_query']}` (it fetches the groups). Ratios are `frp` time / floor time.",
        f"- **Engine vs naive**: in process, `engine.assign.simulate` (round-robin) and the "
        f"naive `engine.reference.reference_simulate` (every partner scanned for every "
        f"customer) on the first {cfg['naive_customers']:,} customers with all partners. "
        "Their outputs (`tenant_id, outcome, partner_id, psm_email, queue, reason`) are "
        "compared and must be equal. The naive cost per customer does not depend on the "
        "cohort's size (it scans every partner for each eligible customer), so the target "
        "compares the engine's throughput on the full cohort with the naive throughput "
        "measured on the subset; the same-customers ratio is shown too.",
        "- **Peak memory** is each `frp simulate` child's peak RSS (`ru_maxrss` from "
        "`os.wait4`). Linux counts in a child's peak the peak of the process that spawned "
        "it, so each child is started by a tiny launcher"
        + (
            f" (its {m['rss_floor_mib']:.0f} MiB is the least a child can report)"
            if m.get("rss_floor_mib")
            else ""
        )
        + ", never by the benchmark process itself.",
        f"- **Noise.** Each measurement is repeated {cfg['repeats']} time(s), interleaved (each "
        "repetition runs the floor and every policy once, in a rotated order"
        + (
            ", then the in-process measurements"
            if report.get("in_process_interleaved")
            else "; the in-process measurements follow all repetitions"
        )
        + "); tables show "
        "the median (and the minimum where it says so). Ratios are of medians.",
        "",
    ]


def _room_note(report: dict[str, Any]) -> list[str]:
    room = [s for s in report["sizes"] if _world(s) != "bound"]
    if not room:
        return []
    scale = room[0].get("capacity_scale")
    return [
        f"- **The world with room** (rows marked *(room)*) is the same world with every "
        f"capacity (and the load already on it) {scale} times larger (`bench/world.py`, "
        "`ROOM_SCALE`; `--worlds`): partners have room for nearly every eligible customer, "
        "so the selection loop picks a partner for each of them, where in the "
        "capacity-bound world every pool is full after the first few percent and the rest "
        "is settled in bulk."
    ]


def _machine(m: dict[str, Any], report: dict[str, Any]) -> list[str]:
    """When and on what the numbers were measured, and how busy the machine was."""
    pk = m.get("packages", {})
    git = m.get("git") or {}
    lines = [
        f"Measured {report['started']} on {m.get('cpu', 'an unknown CPU')}, "
        f"{m.get('cores')} cores"
        + (f", {m['memory_gib']} GiB" if m.get("memory_gib") else "")
        + f"; Python {m.get('python')}, "
        + ", ".join(f"{k} {v}" for k, v in pk.items() if v)
        + (
            f"; commit `{git['commit'][:10]}`"
            + (" with local changes" if git.get("local_changes") else "")
            if git.get("commit")
            else ""
        )
        + f". The run took {report['duration_s'] / 60:.1f} min.",
        "",
    ]
    loads = [m.get("load_average_start"), m.get("load_average_end")]
    if all(loads):
        busy = max(x[0] for x in loads) > (m.get("cores") or 1)
        lines += [
            "Load average (1, 5, 15 min) at the start "
            + ", ".join(f"{x:.1f}" for x in loads[0])
            + " and at the end "
            + ", ".join(f"{x:.1f}" for x in loads[1])
            + (
                ": the machine was busy with other work, so absolute times are inflated; "
                "the interleaved ratios are the more reliable figures."
                if busy
                else "."
            ),
            "",
        ]
    if m.get("cores") != 2:
        lines += [
            f"> The targets are stated for 2 cores; this machine has {m.get('cores')}.",
            "",
        ]
    return lines


def _targets(report: dict[str, Any]) -> list[str]:
    """Issue #6's targets, met or not, and what each is judged on."""
    lines = ["## Targets (issues #6 and #14)", ""]
    if not report["targets"]:
        return lines
    sizes = report["sizes"]
    intro = []
    if sizes:
        largest = max(sizes, key=lambda x: x["customers"])["customers"]
        intro.append(
            f"The engine's are judged on the largest size measured ({largest:,} customers "
            f"x {_partners(report):,} partners)"
        )
    if any(t["measured_at"] == "browser" for t in report["targets"]):
        intro.append(
            "the dashboard's on the medians measured in a real browser "
            "([below](#the-dashboard-in-a-real-browser))"
        )
    lines += [
        "; ".join(intro) + "; the benchmark reports them and never fails on them.",
        "",
    ]
    rows = []
    for t in report["targets"]:
        value = (
            _x(t["value"])
            if t["unit"] == "x"
            else _s(t["value"])
            if t["unit"] == "s"
            else _mib(t["value"])
        )
        rows.append([t["target"], t["goal"], value, "**" + t["status"] + "**"])
    return [*lines, *_table(["target", "goal", "measured", "status"], rows), ""]


def _end_to_end(sizes: list[dict[str, Any]], policies: Sequence[str]) -> list[str]:
    """``frp simulate`` against the floor: medians with peak RSS, then minima."""
    lines = [
        "## End to end: `frp simulate` against the floor",
        "",
        "Median wall time of the whole process, its ratio to the floor, and its peak RSS "
        "(the largest of the repeats).",
        "",
    ]
    header = ["customers", "floor"] + [p for p in policies] + ["process start-up"]
    rows = []
    for s in sizes:
        row = [_label(s), _s(s["floor"]["median_s"])]
        for p in policies:
            r = s["policies"][p]
            row.append(f"{_s(r['median_s'])} ({_x(r['ratio_to_floor'])}), {_mib(r['rss_mib_max'])}")
        row.append(_s(s["startup"]["median_s"]))
        rows.append(row)
    lines += _table(header, rows)
    lines += [
        "",
        "Minimum times (the least noisy view) and the floor's own peak RSS:",
        "",
    ]
    rows = []
    for s in sizes:
        row = [_label(s), f"{_s(s['floor']['min_s'])}, {_mib(s['floor']['rss_mib_max'])}"]
        for p in policies:
            r = s["policies"][p]
            row.append(f"{_s(r['min_s'])} ({_x(r['ratio_to_floor_min'])})")
        rows.append(row)
    return lines + _table(["customers", "floor"] + list(policies), rows)


def _against_naive(sizes: list[dict[str, Any]]) -> list[str]:
    """The engine's throughput against the naive reference's, and whether outputs agree."""
    rows = []
    for s in sizes:
        c = s["naive_comparison"]
        rows.append(
            [
                _label(s),
                _n(c["customers"]),
                "equal" if c["equal"] else f"**DIFFERENT** ({c['mismatched_rows']} rows)",
                _rate(c["naive"]["throughput_per_s"]),
                _rate(c["engine"]["throughput_per_s"]),
                _x(c["speedup_same_customers"]),
                _rate(s["engine_full"]["throughput_per_s"]),
                _x(c["speedup_full_size"]),
            ]
        )
    header = [
        "cohort",
        "subset",
        "outputs",
        "naive",
        "engine on the subset",
        "ratio",
        "engine on the full cohort",
        "ratio (target)",
    ]
    return ["", "## Engine against the naive reference", "", *_table(header, rows)]


def _optimal(sizes: list[dict[str, Any]]) -> list[str]:
    """What the optimal policy costs in time and gains in placements over round-robin."""
    rows = []
    for s in sizes:
        o = s["optimal_vs_round_robin"]
        n = s["customers"]
        rows.append(
            [
                _label(s),
                _x(o["time_ratio"]),
                f"{_n(o['placed_round_robin'])} ({o['placed_round_robin'] / n:.1%})",
                f"{_n(o['placed_optimal'])} ({o['placed_optimal'] / n:.1%})",
                f"{o['placed_difference']:+,}",
            ]
        )
    header = ["customers", "time ratio", "placed by round-robin", "placed by optimal", "difference"]
    return ["", "## Optimal against round-robin", "", *_table(header, rows)]


def _phases(sizes: list[dict[str, Any]]) -> list[str]:
    """Where an in-process ``frp simulate`` spends its time."""
    lines = [
        "",
        "## Where the time goes",
        "",
        "The phases of `frp simulate` (round-robin), run in process: read and validate both "
        "files, simulate, build the result and write it. The end-to-end time adds the "
        "process start-up (imports).",
        "",
    ]
    rows = []
    for s in sizes:
        ph = s["phases_median_s"]
        reasons = s["policies"]["round-robin"]["reasons"]
        rows.append(
            [
                _label(s),
                _s(s["startup"]["median_s"]),
                _s(ph["read"]),
                _s(ph["simulate"]),
                _s(ph["write"]),
                ", ".join(f"{k} {v:,}" for k, v in reasons.items()),
            ]
        )
    header = ["customers", "start-up", "read", "simulate", "write", "round-robin outcomes"]
    return lines + _table(header, rows)


def _before_after(sizes: list[dict[str, Any]], policies: Sequence[str]) -> list[str]:
    """Each policy against the baseline tree (``--baseline``) measured beside it."""
    if not any(s.get("baseline") for s in sizes):
        return []
    lines = [
        "",
        "## Before and after",
        "",
        "The baseline (`--baseline`: another source tree, here the code before this change) "
        "runs `frp simulate` in the same repetitions, interleaved with this tree's: median "
        "wall time (ratio to the floor of the same run), median CPU time (user + system, "
        "less sensitive to a busy machine) and the largest peak RSS, before -> after.",
        "",
    ]
    rows = []
    for s in sizes:
        for p in policies:
            b, a = s["baseline"].get(p), s["policies"][p]
            if b is None:
                continue
            rows.append(
                [
                    _label(s),
                    p,
                    f"{_s(b['median_s'])} ({_x(b['ratio_to_floor'])}) -> "
                    f"{_s(a['median_s'])} ({_x(a['ratio_to_floor'])})",
                    _x(b["after_over_before"]),
                    f"{_s(b['cpu_s_median'])} -> {_s(a['cpu_s_median'])}",
                    _x(b["cpu_after_over_before"]),
                    f"{_mib(b['rss_mib_max'])} -> {_mib(a['rss_mib_max'])}",
                ]
            )
    header = ["customers", "policy", "wall (x floor)", "after/before", "CPU", "after/before"]
    return lines + _table([*header, "peak RSS"], rows)


def _first_run(sizes: list[dict[str, Any]], policies: Sequence[str]) -> list[str]:
    """The first run after a fresh install (compiled-code cache empty) against later ones."""
    if not any(s.get("first_run") for s in sizes):
        return []
    lines = [
        "",
        "## The first run after a fresh install",
        "",
        "The selection loop is compiled by numba the first time a process needs it and kept "
        "on disk (`engine/__pycache__`); each policy runs once with an empty cache "
        "(`NUMBA_CACHE_DIR` pointing at a new folder) before the repetitions. Steady state "
        "is the median of the repetitions, which load the cached code.",
        "",
    ]
    rows = []
    for s in sizes:
        for p in policies:
            f = s["first_run"].get(p)
            if f is None:
                continue
            a = s["policies"][p]
            rows.append(
                [
                    _label(s),
                    p,
                    f"{_s(f['seconds'])}, {_mib(f['rss_mib'])}",
                    f"{_s(a['median_s'])}, {_mib(a['rss_mib_max'])}",
                    _x(f["over_steady"]),
                ]
            )
    header = ["customers", "policy", "first run", "steady state", "first / steady"]
    return lines + _table(header, rows)


def _unit(unit: dict[str, Any] | None) -> list[str]:
    """The timings unit tests used to assert (``bench.unit``)."""
    if not unit:
        return []
    rows = [
        [r["label"], _s(r["median_s"]), f"< {r['goal_s']:g} s", ", ".join(map(_s, r["times_s"]))]
        for r in unit.values()
    ]
    return [
        "",
        "## Timings moved out of the unit tests",
        "",
        "Wall-clock bounds that unit tests used to assert, and that failed whenever the "
        "machine was busy: the tests now check only that the work is done right, and the "
        "benchmark measures the time (`bench/unit.py`), beside everything else.",
        "",
        *_table(["measurement", "median", "old bound", "runs"], rows),
    ]


def _chart(chart: str | None, sizes: list[dict[str, Any]] | None = None) -> list[str]:
    """The time-against-size charts, or why there are none."""
    lines = ["", "## Time against cohort size", ""]
    room = any(_world(s) != "bound" for s in sizes or [])
    bound = any(_world(s) == "bound" for s in sizes or [])
    if chart is None:
        return [*lines, "(no chart in this run)"]
    if chart == "spec":
        return [
            *lines,
            "No image: vl-convert-python is not installed, so only the chart's Vega-Lite "
            f"spec was written: [`{SPEC}`]({SPEC}).",
        ]
    images = []
    if bound or not room:
        images += [f"![median time against cohort size, log-log]({PNG})", ""]
    if room:
        images += [
            f"![the world with room: median time against cohort size, log-log]({ROOM_PNG})",
            "",
        ]
    return [
        *lines,
        *images,
        "Log-log: a straight line of slope 1 is linear scaling. Drawn with Altair and "
        f"rendered with vl-convert-python; the Vega-Lite specs are [`{SPEC}`]({SPEC})"
        + (f" and [`{ROOM_SPEC}`]({ROOM_SPEC})" if room else "")
        + ".",
    ]


def _running() -> list[str]:
    return [
        "",
        "## Running it",
        "",
        "```sh",
        "make bench                                  # all sizes (10k, 100k, 1M) and the "
        "browser, 3 repeats",
        ".venv/bin/python -m bench.run --sizes 10k,100k --no-browser",
        ".venv/bin/python -m bench.browser 1         # only the browser part, printed",
        ".venv/bin/python -m bench.browser room 3    # only Simulate in the world with room",
        ".venv/bin/python -m bench.run --quick       # 10k, 1 repeat, into bench/results/tmp/",
        ".venv/bin/python -m bench.run --render-only # rewrite this page from latest.json",
        "```",
        "",
        "Results: `bench/results/bench-<date-time>.json` and `bench/results/latest.json`; "
        "generated worlds and the browser part's databases are cached in "
        "`bench/results/tmp/` (git-ignored). "
        "`tests/test_bench.py` runs the quick size in the test suite.",
        "",
    ]


def browser_section(b: dict[str, Any] | None) -> list[str]:
    """The dashboard's timings in Chromium (``bench.browser``), or why there are none."""
    lines = ["## The dashboard in a real browser", ""]
    if b is None:
        return lines + ["Not measured in this run (`--no-browser`, or `--quick`).", ""]
    if "error" in b:
        return lines + ["The browser part failed in this run:", "", "```", b["error"], "```", ""]
    db = b["database"]
    sim = b["simulate"]
    lines += [
        "Measured with `bench/browser.py`: `streamlit run app.py` on a copy of a database, "
        f"driven by Playwright in Debian's Chromium ({b.get('chromium') or 'version unknown'}"
        f"; Playwright {b.get('playwright')}, Streamlit {b.get('streamlit')}), "
        "1400x1000 viewport, a new browser context (no browser cache) for every measurement. "
        "A timer starts once the server answers its health check; a page counts as drawn when "
        "the script run has finished, no skeleton or running indicator is left and (Fairness) "
        f"its first chart has painted. {b['repeats']} repeat(s); medians, with the minimum "
        "and maximum.",
        "",
        f"- **Simulate**: the demo database; the Simulate page, a synthetic cohort of "
        f"{sim['customers']:,} customers, policies {', '.join(sim['policies'])} (the page's "
        "default pair); from the click on *Run simulation* to the results drawn: the first "
        "simulation of a fresh server, then again in a new session. A fresh server each "
        "repetition, whose first request is the Data page (the start-up baseline below).",
        f"- **Fairness**: the demo world with `{db['cohort_file']}` (the benchmark world's "
        "cohort) committed to it by `frp commit --cohort` (round-robin): "
        f"{db['referrals']:,} committed referrals, a {db['file_mib']:,.0f} MiB file, built "
        "once and cached in `bench/results/tmp/`. *Cold* runs each start a fresh server "
        "on a fresh copy of the file, so nothing is cached in the process or in the file; "
        "*warm* runs follow in a new session on the same server.",
    ]
    room = b.get("simulate_room")
    if room:
        lines.append(
            f"- **Simulate, world with room** (issue #14): the demo database with every "
            f"partner's capacity {room['capacity_scale']} times larger, a synthetic cohort of "
            f"{room['customers']:,} customers, policies {', '.join(room['policies'])}; the "
            "same click to results, on a fresh server and then in a new session."
        )
    lines.append("")
    rows = []
    names = {
        "simulate": f"Simulate: {sim['customers']:,} synthetic customers, click to results "
        "(a server that has simulated before)",
        "simulate_first": "Simulate, the first simulation of a fresh server",
        "simulate_room": "Simulate, world with room: the same click (a server that has "
        "simulated before)",
        "simulate_room_first": "Simulate, world with room: the first simulation of a fresh server",
        "fairness_cold": "Fairness, cold: sidebar click to drawn, first visit of the page "
        "on a fresh server (the dashboard open on Partner capacity)",
        "fairness_warm": "Fairness, warm: the same in a new session",
        "fairness_cold_url": "Fairness, cold by URL: `/fairness` as the fresh server's "
        "first request (the app's start-up and Streamlit's front end included)",
        "fairness_warm_url": "Fairness, warm by URL: `/fairness` in a new session",
        "start_up_url": "Baseline: the Data page (demo database) by URL as a fresh server's "
        "first request, what the app's start-up costs whichever page comes first",
    }
    for key, name in names.items():
        if key in b:
            r = b[key]
            rows.append([name, _s(r["median_s"]), _s(r["min_s"]), _s(r["max_s"])])
    lines += _table(["measurement", "median", "min", "max"], rows)
    lines += [
        "",
        "The Fairness page counts the committed referrals in DuckDB "
        "(`store.fairness.committed_counts`: one row per distinct outcome, partner, "
        "reason, place, language, workloads and pool, with how many referrals it stands "
        "for) and hands the counted rows to `engine.fairness.report`, which gives the same "
        "report as from one row per referral (tested). Its reads are cached per database "
        "file and version, so a warm visit reads nothing.",
        "",
    ]
    return lines


def write_docs(report: dict[str, Any], folder: Path, chart: bool = True) -> list[Path]:
    """Write the page (and the chart) into ``folder``; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    kind = None
    if chart and report["sizes"]:
        written = write_chart(report, folder)
        kind = "png" if any(p.suffix == ".png" for p in written) else "spec"
    page = folder / PAGE
    page.write_text(render(report, kind))
    return [page, *written]
