"""Deployment for a team (docs/deploy.md), as far as it can be tested here: the container
starts the dashboard with the same command the browser tests start it with, `frp serve`
runs Streamlit as documented, the scheduler runs `frp expire` and `frp outbox send`, and
the example secrets file parses and gives the roles the guide says."""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path

import pytest

from bench.server import server_argv
from cli import serve
from cli.main import main as frp_main
from ui.auth import MANAGER, VIEWER, role_for

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"
SECRETS = ROOT / ".streamlit" / "secrets.toml.example"


def instruction(name: str) -> str:
    """The last ``NAME ...`` instruction of the Dockerfile, its arguments as written."""
    found = re.findall(rf"^{name}\s+(.+)$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert found, f"no {name} in {DOCKERFILE}"
    return found[-1]


def test_the_container_starts_the_command_the_browser_tests_start() -> None:
    cmd = json.loads(instruction("CMD"))  # exec form: no shell between
    assert cmd == serve.command()
    assert cmd[:2] == ["frp", "serve"]
    tests_run = server_argv(8765)
    assert tests_run[1:3] == ["-m", "cli.main"]  # `frp` itself, by this interpreter
    assert tests_run[3:] == serve.command("127.0.0.1", 8765)[1:]


def test_the_image_is_python_311_slim_with_the_store_on_a_volume() -> None:
    assert instruction("FROM") == "python:3.11-slim"
    volumes = json.loads(instruction("VOLUME"))
    db = re.search(r"FRP_DB=(\S+)", DOCKERFILE.read_text())
    assert db is not None and any(db.group(1).startswith(v + "/") for v in volumes)
    assert instruction("EXPOSE") == str(serve.DEFAULT_PORT)


def test_frp_serve_runs_streamlit_on_the_app_with_the_store_and_clock(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr(os, "execv", lambda path, argv: ran.append([path, *argv]))
    for name in ("FRP_DB", "FRP_NOW"):  # set by the command: restored after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    db = tmp_path / "team.duckdb"
    argv = ["serve", "--port", "9123", "--db", str(db), "--now", "2026-12-16"]
    assert frp_main(argv) == 0
    (got,) = ran
    assert got[1:] == serve.streamlit_argv("0.0.0.0", 9123)
    assert got[0] == got[1] and got[2:5] == ["-m", "streamlit", "run"]
    assert Path(got[5]) == ROOT / "app.py"
    flags = dict(zip(got[6::2], got[7::2], strict=True))
    assert flags["--server.port"] == "9123" and flags["--server.headless"] == "true"
    assert (os.environ["FRP_DB"], os.environ["FRP_NOW"]) == (str(db), "2026-12-16")


def test_the_scheduler_expires_and_sends_on_the_same_store() -> None:
    text = COMPOSE.read_text()
    assert "frp expire" in text and "frp outbox send" in text
    assert text.count("frp-data:/data") == 2  # the dashboard's store, shared
    assert "dockerfile: deploy/Dockerfile" in text


def test_the_example_secrets_parse_and_give_the_documented_roles() -> None:
    secrets = tomllib.loads(SECRETS.read_text())
    auth = secrets["auth"]
    assert set(auth) == {
        "redirect_uri",
        "cookie_secret",
        "client_id",
        "client_secret",
        "server_metadata_url",
    }
    assert auth["redirect_uri"].endswith("/oauth2callback")
    assert auth["server_metadata_url"] == (
        "https://login.microsoftonline.com/<tenant-id>/v2.0/.well-known/openid-configuration"
    )
    frp = secrets["frp"]
    roles, default = frp["roles"], frp["default_role"]
    assert role_for("FT.Manager@contoso.com", roles, default) == MANAGER  # exact, any case
    assert role_for("kim@fasttrack-managers.contoso.com", roles, default) == MANAGER  # domain
    assert role_for("analyst@contoso.com", roles, default) == VIEWER
    assert role_for("someone@elsewhere.example", roles, default) == default == VIEWER


def test_the_guide_covers_sign_in_the_volume_the_scheduler_and_backups() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    for must in (
        "deploy/Dockerfile",
        "frp serve",
        "FRP_DB",
        "st.login",
        ".streamlit/secrets.toml.example",
        "frp expire",
        "frp outbox send",
        "frp backup",
        "frp restore",
    ):
        assert must in guide, must
    assert "docs/deploy.md" in (ROOT / "README.md").read_text()
