"""What the AppTest modules share: opening the app or a page (optionally signed in as a
viewer or a manager), reading the store beside it, and the text a page shows.

Fixtures (``fresh_caches``, ``committed_db``) live in ``tests/conftest.py``; this module
holds plain functions, imported by name, so each test reads top to bottom.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import duckdb
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")

SECRETS = {
    "auth": {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "test-cookie-secret",
        "client_id": "frp-assign",
        "client_secret": "not-a-secret",
        "server_metadata_url": "https://login.example/.well-known/openid-configuration",
    },
    "frp": {"roles": {"boss@example.com": "manager", "*@managers.example": "manager"}},
}
VIEWER = {"is_logged_in": True, "email": "val.viewer@example.com", "name": "Val Viewer"}
MANAGER = {"is_logged_in": True, "email": "boss@example.com", "name": "Bo Boss"}


def signed_in(at: AppTest, user: dict | None) -> AppTest:
    """``user`` None: local mode (no [auth] section)."""
    if user is not None:
        at.secrets = copy.deepcopy(SECRETS)
        at.user = dict(user)
    return at


def open_app(page: str | None = None, user: dict | None = None, timeout: float = 90) -> AppTest:
    """The whole app through its router (sidebar, sign-in), switched to ``page``."""
    at = signed_in(AppTest.from_file(APP, default_timeout=timeout), user)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, at.exception
    return at


def open_page(
    page: str,
    user: dict | None = None,
    query_params: dict[str, str] | None = None,
    timeout: float = 60,
) -> AppTest:
    """One page file on its own (``pages/referrals.py``), as a link with ``query_params``."""
    at = signed_in(AppTest.from_file(str(ROOT / page), default_timeout=timeout), user)
    at.query_params.update(query_params or {})
    at.run()
    assert not at.exception, at.exception
    return at


def run_simulation(at: AppTest, policies: list[str], **inputs: object) -> AppTest:
    """Press the Simulate page's "Run simulation" with ``policies`` and number inputs."""
    at.multiselect(key="policies").set_value(policies)
    for key, value in inputs.items():
        at.number_input(key=key).set_value(value)
    at.button[0].click()  # the form's "Run simulation"
    at.run()
    assert not at.exception, at.exception
    return at


def rows(path: Path, sql: str, params: list | None = None) -> list[tuple[Any, ...]]:
    """A query on its own short connection (same process as the app: same database)."""
    con = duckdb.connect(str(path))
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def row(path: Path, sql: str, params: list | None = None) -> tuple[Any, ...]:
    return rows(path, sql, params)[0]


def value(path: Path, sql: str, params: list | None = None) -> Any:
    return row(path, sql, params)[0]


def chart_titles(at: AppTest) -> list[str]:
    """The titles of the page's charts, in order (a title may be text or a title object)."""
    titles = []
    for chart in at.get("vega_lite_chart"):
        title = json.loads(chart.proto.spec).get("title")
        titles.append(title["text"] if isinstance(title, dict) else title)
    return titles


def page_text(at: AppTest) -> str:
    """Everything a person could read on the page: text, labels, options, tables, HTML."""
    parts = [e.value for kind in ("markdown", "code", "text", "caption") for e in at.get(kind)]
    parts += [str(o) for s in at.selectbox for o in s.options]
    parts += [e.label for e in at.expander]
    parts += [d.value.to_csv() for d in at.dataframe]
    parts += [h.proto.body for h in at.get("html")]
    return "\n".join(str(p) for p in parts)
