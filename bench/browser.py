"""The dashboard in a real browser: issue #6's two page timings, measured with Chromium.

- **Simulate.** A fresh server on a copy of the demo database for every repetition; the
  Simulate page, a synthetic cohort of 10,000 customers, the two default policies; the
  time from the click on "Run simulation" until the results are drawn (the script has
  finished, no skeleton, no running indicator), for the server's first simulation and
  again in a new session. The server's first request is the Data page, timed too: what
  the app's start-up costs any page opened first (a baseline for the Fairness page
  opened by URL).
- **Simulate in a world with room** (issue #14). The demo database with every partner's
  capacity ``bench.world.ROOM_SCALE`` times larger, so partners have room for nearly
  every customer; a synthetic cohort of 100,000 customers and all four policies side by
  side; click to results, the server's first simulation and again in a new session.
- **Fairness.** The demo database plus about a million committed referrals: the demo
  world (``frp demo``) with the benchmark world's 1,000,000-customer cohort committed to
  it (``frp commit --cohort``, round-robin). Drawn = as above, and its first chart has
  painted. *Cold* runs each start a fresh server process on a fresh copy of the database,
  so nothing is cached in the process or in the file; *warm* runs follow in a new browser
  session on the same server. Two ways in: the click on "Fairness" in the sidebar with the
  dashboard open on its landing page (the first visit of the page; the app is loaded),
  and ``/fairness`` typed in as the server's very first request (the app's start-up, its
  imports and Streamlit's front end included).

Each includes what a user waits for: the script run, the data and the charts, and, when
a page is opened by URL, the browser loading Streamlit's front end (a new browser context
each time, so no browser cache). The server is started, and answers its health check,
before a timer starts. The database with the committed cohort is built once and cached under
``bench/results/tmp/`` (git-ignored), keyed by the world and by the code that writes it.

Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright, as in the browser
tests (``tests/browser/``). ``python -m bench.browser room [REPEATS]`` measures only the
Simulate page in the world with room, from the demo database alone (minutes, not the
committed million's build).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.paths import CACHE_DIR, ROOT
from bench.server import CHROMIUM, CHROMIUM_ARGS, ServerError, start_server, stop_server
from bench.world import ROOM_SCALE, ensure_world

VIEWPORT = {"width": 1400, "height": 1000}
SIMULATE_CUSTOMERS = 10_000
SIMULATE_POLICIES = ("round-robin", "least-loaded")  # the page's default pair
#: The world with room's Simulate run: the synthetic cohort's largest size, every policy.
ROOM_CUSTOMERS = 100_000
ROOM_POLICIES = ("round-robin", "weighted", "least-loaded", "optimal")
#: Issue #14's goal for it.
ROOM_GOAL_S = 3.0
#: The issue's goal for both pages.
GOAL_S = 2.0
TIMEOUT_MS = 120_000
#: Code whose changes make a cached database stale (what `frp demo` and `frp commit` write).
DB_SOURCES = ("store", "engine", "cli", "data")

Log = Callable[[str], None]

# The script run has ended and everything is drawn: no skeleton, no running indicator.
_IDLE = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app && app.getAttribute('data-test-script-state') === 'notRunning'
        && !document.querySelector('[data-testid="stSkeleton"]')
        && !document.querySelector('[data-testid="stStatusWidget"]');
}"""


class BrowserBenchError(RuntimeError):
    """The browser part could not measure (no Chromium, a server that did not start, ...)."""


@dataclass(frozen=True)
class Databases:
    demo: Path
    committed: Path
    referrals: int
    build_s: float | None  # None when both came from the cache


def _frp() -> list[str]:
    exe = Path(sys.executable).with_name("frp")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cli.main"]


def _sources_digest() -> str:
    h = hashlib.sha256()
    for folder in DB_SOURCES:
        for f in sorted((ROOT / folder).rglob("*")):
            if f.is_file() and f.suffix in {".py", ".toml", ".csv", ".json"}:
                h.update(str(f.relative_to(ROOT)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _run(cmd: list[str], log: Log) -> None:
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise BrowserBenchError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
    log("  " + (done.stdout.strip().splitlines() or [""])[-1][:160])


def ensure_databases(cohort: Path, cache: Path, log: Log) -> Databases:
    """The demo database and the demo with ``cohort`` committed, built once per code version."""
    folder = cache / f"browser-{_sources_digest()}-{cohort.stem}"
    demo, committed = folder / "demo.duckdb", folder / "committed.duckdb"
    built = None
    if not (demo.exists() and committed.exists()):
        for old in cache.glob(f"browser-*-{cohort.stem}"):
            shutil.rmtree(old, ignore_errors=True)  # a stale build of older code
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        log(f"[browser] building the databases in {folder}")
        tmp_demo, tmp_committed = folder / "demo.tmp", folder / "committed.tmp"
        _run([*_frp(), "demo", "--db", str(tmp_demo), "--force"], log)
        shutil.copy(tmp_demo, tmp_committed)
        _run([*_frp(), "commit", "--db", str(tmp_committed), "--cohort", str(cohort)], log)
        tmp_demo.rename(demo)
        tmp_committed.rename(committed)
        built = time.perf_counter() - started
    import duckdb

    con = duckdb.connect(str(committed), read_only=True)
    try:
        row = con.execute("SELECT count(*) FROM referrals").fetchone()
    finally:
        con.close()
    return Databases(demo, committed, int(row[0]) if row else 0, built)


# --------------------------------------------------------------------------- server


@contextmanager
def server(db_source: Path, work: Path) -> Iterator[str]:
    """`streamlit run app.py` on a fresh copy of ``db_source``; yields its URL once healthy."""
    run_dir = Path(tempfile.mkdtemp(prefix="server-", dir=work))
    try:
        try:
            proc, url = start_server(db_source, run_dir)
        except ServerError as exc:
            raise BrowserBenchError(str(exc)) from None
        try:
            yield url
        finally:
            stop_server(proc)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


# --------------------------------------------------------------------------- pages


def _wait_drawn(page: Any, title: str) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", name=title, exact=True).first).to_be_visible(
        timeout=TIMEOUT_MS
    )
    page.wait_for_function(_IDLE, timeout=TIMEOUT_MS)


def _no_exception(page: Any, what: str) -> None:
    boxes = page.locator('[data-testid="stException"]')
    if boxes.count():
        raise BrowserBenchError(f"{what}: the page shows an exception: {boxes.first.inner_text()}")


def _fairness_drawn(page: Any) -> None:
    _wait_drawn(page, "Fairness")
    chart = page.locator('[data-testid="stVegaLiteChart"]').first
    chart.locator("canvas, svg").first.wait_for(state="visible", timeout=TIMEOUT_MS)


def _check_fairness(page: Any) -> None:
    _no_exception(page, "fairness")
    if page.get_by_text("Jain's index").count() == 0:
        raise BrowserBenchError("fairness: no headline drawn (no referrals in the database?)")


@contextmanager
def _new_page(browser: Any) -> Iterator[Any]:
    """A page in a browser context of its own (nothing cached from an earlier measurement),
    closed after."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        yield context.new_page()
    finally:
        context.close()


def _seconds(act: Callable[[], object], drawn: Callable[[], object]) -> float:
    """Seconds from ``act()`` until ``drawn()`` returns."""
    started = time.perf_counter()
    act()
    drawn()
    return time.perf_counter() - started


def fairness_by_url(browser: Any, url: str) -> float:
    """Seconds from navigating to /fairness until it is drawn, in a new browser context."""
    with _new_page(browser) as page:
        elapsed = _seconds(lambda: page.goto(f"{url}/fairness"), lambda: _fairness_drawn(page))
        _check_fairness(page)
        return elapsed


def fairness_from_sidebar(browser: Any, url: str) -> float:
    """Seconds from the click on "Fairness" in the sidebar (the dashboard open on its
    landing page, Partner capacity) until the Fairness page is drawn, in a new context."""
    with _new_page(browser) as page:
        page.goto(url)
        _wait_drawn(page, "Partner capacity")
        link = page.get_by_test_id("stSidebarNav").get_by_text("Fairness", exact=True)
        elapsed = _seconds(link.click, lambda: _fairness_drawn(page))
        _check_fairness(page)
        return elapsed


def page_by_url(browser: Any, url: str, path: str, title: str) -> float:
    """Seconds from navigating to ``path`` until the page is drawn, in a new context."""
    with _new_page(browser) as page:
        elapsed = _seconds(lambda: page.goto(f"{url}/{path}"), lambda: _wait_drawn(page, title))
        _no_exception(page, path)
        return elapsed


def room_database(demo: Path, work: Path) -> Path:
    """A copy of the demo database whose partners have ROOM_SCALE times their capacity."""
    import duckdb

    path = work / "room.duckdb"
    shutil.copy(demo, path)
    con = duckdb.connect(str(path))
    try:
        con.execute("UPDATE partners SET capacity = capacity * ?", [ROOM_SCALE])
    finally:
        con.close()
    return path


def _choose_policies(page: Any, policies: tuple[str, ...]) -> None:
    """Add the policies the page's multiselect does not have yet (by their words)."""
    from engine.reasons import Policy

    box = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Policies, side by side")
    for p in policies:
        words = Policy(p).words
        if box.get_by_text(words, exact=True).count():
            continue
        box.locator("input").click()
        page.get_by_role("option", name=words).click()
        page.keyboard.press("Escape")
        page.wait_for_function(_IDLE, timeout=TIMEOUT_MS)


def simulate_click(
    browser: Any,
    url: str,
    customers: int = SIMULATE_CUSTOMERS,
    policies: tuple[str, ...] = (),
) -> float:
    """Seconds from the click on "Run simulation" (synthetic cohort of ``customers``; the
    page's default policies and ``policies``) until the results are drawn, in a new
    browser context."""
    with _new_page(browser) as page:
        page.goto(f"{url}/simulate")
        _wait_drawn(page, "Simulate cohort")
        page.get_by_text("Synthetic cohort", exact=True).first.click()
        size = page.get_by_label("Customers", exact=True)
        size.wait_for(state="visible", timeout=TIMEOUT_MS)
        page.wait_for_function(_IDLE, timeout=TIMEOUT_MS)
        size.fill(str(customers))
        size.press("Tab")
        page.wait_for_function(_IDLE, timeout=TIMEOUT_MS)
        _choose_policies(page, policies)

        def results_drawn() -> None:
            # A locator's wait, not expect(): each of expect's retries renders an
            # accessibility snapshot for its message, half a second of the page's CPU over
            # a loaded run, which the click would be charged with.
            done = page.get_by_text(f"Simulated {customers:,} customers", exact=False).first
            done.wait_for(state="attached", timeout=TIMEOUT_MS)
            page.wait_for_function(_IDLE, timeout=TIMEOUT_MS)

        run = page.get_by_role("button", name="Run simulation")
        elapsed = _seconds(run.click, results_drawn)
        _no_exception(page, "simulate")
        if page.get_by_text("Jain", exact=False).count() == 0:
            raise BrowserBenchError("simulate: the results show no fairness headline")
        return elapsed


# --------------------------------------------------------------------------- the run


def _summary(times: list[float]) -> dict[str, Any]:
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs_s": times,
    }


#: The fairness timings: (key, what it measures); each is repeated on fresh servers.
FAIRNESS_RUNS = {
    "fairness_cold": "sidebar click to Fairness drawn, first visit of the page on a fresh server",
    "fairness_warm": "the same in a new session afterwards (the page's reads cached)",
    "fairness_cold_url": "/fairness opened by URL as the fresh server's first request "
    "(the app's start-up and Streamlit's front end included)",
    "fairness_warm_url": "/fairness opened by URL in a new session afterwards",
}


START_UP = (
    "the Data page (a form and a table of the demo database) opened by URL as a fresh "
    "server's first request: what any page's first visit pays for the app's start-up"
)


def measure(cohort: Path, cache: Path, repeats: int, log: Log) -> dict[str, Any]:
    """Both pages' timings, ``repeats`` times each; every cold run on a fresh server."""
    if not Path(CHROMIUM).exists():
        raise BrowserBenchError(
            f"{CHROMIUM} is missing: install Debian's chromium (`make browser`), "
            "or run the benchmark with --no-browser"
        )
    from playwright.sync_api import sync_playwright

    started = time.perf_counter()
    dbs = ensure_databases(cohort, cache, log)
    sim: list[float] = []
    sim_first: list[float] = []
    start_up: list[float] = []
    fair: dict[str, list[float]] = {k: [] for k in FAIRNESS_RUNS}
    with tempfile.TemporaryDirectory(prefix="browser-", dir=cache) as tmp, sync_playwright() as p:
        work = Path(tmp)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for rep in range(repeats):
                with server(dbs.demo, work) as url:
                    start_up.append(page_by_url(browser, url, "data", "Data"))
                    if rep == 0:
                        log(f"[browser] start-up: the Data page first {start_up[-1]:.2f} s")
                    sim_first.append(simulate_click(browser, url))
                    sim.append(simulate_click(browser, url))
                    log(
                        f"[browser] repeat {rep + 1}/{repeats} simulate 10k: first on the "
                        f"server {sim_first[-1]:.2f} s, then {sim[-1]:.2f} s"
                    )
            room_first, room = room_runs(browser, room_database(dbs.demo, work), repeats, log)
            for rep in range(repeats):
                with server(dbs.committed, work) as url:
                    fair["fairness_cold"].append(fairness_from_sidebar(browser, url))
                    fair["fairness_warm"].append(fairness_from_sidebar(browser, url))
                with server(dbs.committed, work) as url:
                    fair["fairness_cold_url"].append(fairness_by_url(browser, url))
                    fair["fairness_warm_url"].append(fairness_by_url(browser, url))
                log(
                    f"[browser] repeat {rep + 1}/{repeats} fairness "
                    + ", ".join(
                        f"{k.removeprefix('fairness_')} {v[-1]:.2f} s" for k, v in fair.items()
                    )
                )
        finally:
            browser.close()
    from importlib import metadata

    return {
        "goal_s": GOAL_S,
        "repeats": repeats,
        "duration_s": time.perf_counter() - started,
        "chromium": _chromium_version(),
        "playwright": metadata.version("playwright"),
        "streamlit": metadata.version("streamlit"),
        "database": {
            "cohort_file": _shown(cohort),
            "referrals": dbs.referrals,
            "build_s": dbs.build_s,
            "file_mib": dbs.committed.stat().st_size / 1024 / 1024,
        },
        "simulate": {
            "customers": SIMULATE_CUSTOMERS,
            "policies": list(SIMULATE_POLICIES),
            "what": "click to results, a new session on a server that has simulated before",
            **_summary(sim),
        },
        "simulate_first": {
            "what": "click to results, the first simulation of a fresh server",
            **_summary(sim_first),
        },
        "simulate_room": {
            "customers": ROOM_CUSTOMERS,
            "policies": list(ROOM_POLICIES),
            "capacity_scale": ROOM_SCALE,
            "goal_s": ROOM_GOAL_S,
            "what": "click to results in the world with room, a new session on a server "
            "that has simulated before",
            **_summary(room),
        },
        "simulate_room_first": {
            "what": "the same, the first simulation of a fresh server",
            **_summary(room_first),
        },
        **{k: {"what": FAIRNESS_RUNS[k], **_summary(v)} for k, v in fair.items()},
        "start_up_url": {"what": START_UP, **_summary(start_up)},
    }


def room_runs(
    browser: Any, room_db: Path, repeats: int, log: Log
) -> tuple[list[float], list[float]]:
    """The world with room's Simulate timings, each repeat on a fresh server: its first
    simulation, then another in a new session."""
    first: list[float] = []
    later: list[float] = []
    for rep in range(repeats):
        with server(room_db, room_db.parent) as url:
            first.append(simulate_click(browser, url, ROOM_CUSTOMERS, ROOM_POLICIES))
            later.append(simulate_click(browser, url, ROOM_CUSTOMERS, ROOM_POLICIES))
        log(
            f"[browser] repeat {rep + 1}/{repeats} simulate 100k, world with room, "
            f"4 policies: first on the server {first[-1]:.2f} s, then {later[-1]:.2f} s "
            f"(load {os.getloadavg()[0]:.1f})"
        )
    return first, later


def ensure_demo(cache: Path, log: Log) -> Path:
    """The demo database alone (what the world with room is made from), built once per
    code version: :func:`measure_room` needs no committed cohort."""
    folder = cache / f"browser-{_sources_digest()}-demo"
    demo = folder / "demo.duckdb"
    if not demo.exists():
        for old in cache.glob("browser-*-demo"):
            shutil.rmtree(old, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "demo.tmp"
        _run([*_frp(), "demo", "--db", str(tmp), "--force"], log)
        tmp.rename(demo)
    return demo


def measure_room(cache: Path, repeats: int, log: Log) -> dict[str, Any]:
    """Only the Simulate page in the world with room (issue #14's page target): the first
    simulation of a fresh server and a later one in a new session, ``repeats`` times."""
    if not Path(CHROMIUM).exists():
        raise BrowserBenchError(f"{CHROMIUM} is missing: install Debian's chromium")
    from playwright.sync_api import sync_playwright

    demo = ensure_demo(cache, log)
    with tempfile.TemporaryDirectory(prefix="browser-", dir=cache) as tmp, sync_playwright() as p:
        work = Path(tmp)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            first, later = room_runs(browser, room_database(demo, work), repeats, log)
        finally:
            browser.close()
    return {
        "simulate_room_first": {
            "what": "the first simulation of a fresh server",
            **_summary(first),
        },
        "simulate_room": {"what": "a new session on the same server", **_summary(later)},
    }


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _chromium_version() -> str | None:
    try:
        done = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.browser [REPEATS]``: only the browser part, printed (nothing written);
    ``python -m bench.browser room [REPEATS]``: only the Simulate page in the world with room
    (it needs the demo database alone, not the committed million)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["room"]:
        room = measure_room(CACHE_DIR, int((args[1:] or ["1"])[0]), lambda m: print(m, flush=True))
        for name, timing in room.items():
            print(f"{name}: median {timing['median_s']:.2f} s {timing['runs_s']}")
        return 0
    repeats = int((args or ["1"])[0])
    world = ensure_world(1_000_000, 2_000, 1, CACHE_DIR)
    result = measure(world.customers, CACHE_DIR, repeats, lambda m: print(m, flush=True))
    names = ("simulate_first", "simulate", "simulate_room_first", "simulate_room")
    for name in (*names, *FAIRNESS_RUNS, "start_up_url"):
        print(f"{name}: median {result[name]['median_s']:.2f} s {result[name]['runs_s']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
