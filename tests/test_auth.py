"""Sign-in, roles and privacy (ui.auth): the role mapping, the sign-in screen, every write
path refusing a viewer on the server (and writing nothing), managers and local mode
writing, customer emails masked for viewers, and downloads of personal data audited.

AppTest seeds the signed-in user through ``AppTest.user`` (what ``st.user`` reads) and
the ``[auth]`` / ``[frp.roles]`` settings through ``AppTest.secrets``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from store.privacy import mask_personal
from tests.app_helpers import MANAGER, VIEWER, open_app, open_page, page_text, rows
from tests.smtp_server import Server
from ui import auth
from ui.db import RULES_KEY

PARTNERS_CSV = (
    b"partner_id,name,countries,languages,workloads,capacity,active_referrals,"
    b"referral_ready,psm_name,psm_email,contact_email\n"
    b"P9001,Tidewell Onboarding,US;CA,en,exchange;teams,40,0,true,Ada Lowell,"
    b"ada.lowell@psm.example,referrals@tidewell.example\n"
)
SIGNED_OUT = {"is_logged_in": False}

pytestmark = pytest.mark.usefixtures("fresh_caches")


# --- The role mapping and masking (no Streamlit) ---------------------------------------


def test_an_exact_email_wins_over_its_domain_and_case_does_not_matter() -> None:
    roles = {"Boss@Example.com": "manager", "*@example.com": "viewer"}
    assert auth.role_for("boss@example.COM", roles) == "manager"
    assert auth.role_for("someone@example.com", {"*@example.com": "manager"}) == "manager"
    assert auth.role_for("other@example.com", roles) == "viewer"


def test_a_domain_wildcard_matches_only_that_domain() -> None:
    roles = {"*@managers.example": "manager"}
    assert auth.role_for("kim@managers.example", roles) == "manager"
    assert auth.role_for("kim@sub.managers.example", roles) == "viewer"
    assert auth.role_for("kim@managers.example.evil", roles) == "viewer"


def test_unlisted_users_get_the_default_role_and_unknown_roles_count_as_viewer() -> None:
    assert auth.role_for("new@example.com", {}) == "viewer"
    assert auth.role_for("new@example.com", {}, default="manager") == "manager"
    assert auth.role_for("x@example.com", {"x@example.com": "admin"}) == "viewer"
    assert auth.role_for("x@example.com", {}, default="superuser") == "viewer"


def masked(column: str, *values: str | None) -> list[str | None]:
    return mask_personal(pl.DataFrame({column: list(values)}, schema={column: pl.String}))[
        column
    ].to_list()


def test_mask_email_keeps_the_first_letter_and_the_domain() -> None:
    assert masked("contact_email", "jane.doe@example.com", None) == ["j***@example.com", None]
    # Nothing but the first character survives an address without a domain.
    assert masked("contact_email", "jane.doe", "jane@") == ["j***", "j***"]


def test_a_user_has_the_rights_of_its_role_and_below() -> None:
    assert auth.User("M", "m@x.example", "manager").can("viewer")
    assert not auth.User("V", "v@x.example", "viewer").can("manager")
    assert auth.LOCAL_USER.can("manager") and auth.LOCAL_USER.actor == "dashboard"
    assert auth.User("M", "m@x.example", "manager").actor == "m@x.example"


# --- Fixtures ------------------------------------------------------------------------


@pytest.fixture
def db(committed_db: Path) -> Path:
    return committed_db


def snapshot(path: Path) -> dict[str, list[tuple]]:
    """Everything a write path could change."""
    return {
        "referrals": rows(
            path, "SELECT count(*), list(status ORDER BY referral_id) FROM referrals"
        ),
        "partners": rows(path, "SELECT count(*) FROM partners"),
        "customers": rows(path, "SELECT count(*) FROM customers"),
        "runs": rows(path, "SELECT count(*) FROM runs"),
        "outbox": rows(
            path, "SELECT status, attempts, count(*) FROM outbox GROUP BY ALL ORDER BY ALL"
        ),
        "tasks": rows(path, "SELECT status, count(*) FROM ftop_tasks GROUP BY ALL ORDER BY ALL"),
        "audit": rows(path, "SELECT count(*) FROM audit_log"),
        "rules": rows(path, "SELECT count(*) FROM rules_versions"),
    }


def referrals_page(user: dict | None) -> AppTest:
    return open_page("pages/referrals.py", user)


def app_page(user: dict | None, page: str | None = None) -> AppTest:
    return open_app(page, user)


def errors(at: AppTest) -> str:
    return " ".join(e.value for e in at.error)


def pick_active_frp_referral(at: AppTest) -> str:
    at.multiselect(key="ref_outcome").set_value(["frp"])
    at.multiselect(key="ref_status").set_value(["active"]).run()
    rid = at.selectbox(key="ref_pick").value
    return rid


# --- Sign-in screen and sidebar ------------------------------------------------------


def test_local_mode_is_labelled_and_the_user_is_a_manager(db: Path) -> None:
    at = app_page(None)
    assert auth.LOCAL_CAPTION in [c.value for c in at.sidebar.caption]
    assert at.title[0].value == "Partner capacity"


def test_signed_out_users_see_the_sign_in_screen_and_nothing_else(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "authlib_installed", lambda: True)
    at = app_page(SIGNED_OUT)
    assert [b.label for b in at.button] == ["Sign in"]
    assert [t.value for t in at.title] == ["FRP Assign"]
    assert not at.metric and not at.dataframe and not at.sidebar.caption


def test_without_authlib_the_sign_in_screen_says_what_to_install(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "authlib_installed", lambda: False)
    at = app_page(SIGNED_OUT)
    assert "streamlit[auth]" in errors(at)
    assert not at.button and not at.metric


def test_the_sidebar_shows_who_is_signed_in_their_role_and_sign_out(db: Path) -> None:
    at = app_page(VIEWER)
    panel = " ".join(m.value for m in at.sidebar.markdown)
    assert "Val Viewer" in panel and VIEWER["email"] in panel and "**viewer**" in panel
    assert [b.label for b in at.sidebar.button] == ["Sign out"]
    at = app_page({**VIEWER, "email": "kim@managers.example"})
    assert "**manager**" in " ".join(m.value for m in at.sidebar.markdown)


# --- Referrals: send, close a task, partner responses --------------------------------


def test_a_viewer_cannot_close_a_task(db: Path) -> None:
    at = referrals_page(VIEWER)
    before = snapshot(db)
    at.button(key="task_close").click().run()
    assert "Only managers can close tasks" in errors(at)
    assert snapshot(db) == before


def test_a_viewer_cannot_record_partner_responses(db: Path) -> None:
    at = referrals_page(VIEWER)
    pick_active_frp_referral(at)
    before = snapshot(db)
    at.selectbox(key="decline_reason").set_value("at_capacity").run()
    for key in ("ref_accept", "ref_decline", "ref_complete"):
        at.button(key=key).click().run()
        assert not at.exception
        assert "Only managers can record partner responses" in errors(at)
        assert snapshot(db) == before


def test_a_viewer_cannot_send_the_outbox(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in Server().env().items():  # a free port: nothing is contacted anyway
        monkeypatch.setenv(key, value)
    at = referrals_page(VIEWER)
    before = snapshot(db)
    assert not at.button(key="outbox_send").disabled
    at.button(key="outbox_send").click().run()
    assert not at.exception
    assert "Only managers can send notifications" in errors(at)
    assert snapshot(db) == before


def test_a_manager_closes_a_task_and_responds_as_themselves(db: Path) -> None:
    at = referrals_page(MANAGER)
    task_id = at.selectbox(key="task_pick").value
    at.button(key="task_close").click().run()
    assert not at.error
    assert rows(db, "SELECT status FROM ftop_tasks WHERE task_id = ?", [task_id]) == [("closed",)]
    assert rows(db, "SELECT actor FROM audit_log WHERE action = 'close_task'") == [
        (MANAGER["email"],)
    ]
    rid = pick_active_frp_referral(at)
    at.button(key="ref_accept").click().run()
    assert not at.error
    assert rows(db, "SELECT status FROM referrals WHERE referral_id = ?", [rid]) == [("accepted",)]


def test_local_mode_writes_as_the_dashboard(db: Path) -> None:
    at = referrals_page(None)
    at.button(key="task_close").click().run()
    assert not at.error
    assert rows(db, "SELECT actor FROM audit_log WHERE action = 'close_task'") == [("dashboard",)]


# --- Data: imports and rules -----------------------------------------------------------


def test_a_viewer_cannot_import_or_save_the_teams_rules(db: Path) -> None:
    at = app_page(VIEWER, "pages/data.py")
    at.file_uploader(key="partners_file").upload("partners.csv", PARTNERS_CSV, "text/csv")
    at.run()
    before = snapshot(db)
    at.button(key="partners_import").click().run()
    assert not at.exception
    assert "Only managers can import partners" in errors(at)
    assert snapshot(db) == before
    at.text_area(key="rules_text").set_value('min_seats = 1\n[queues]\nEMEA = "x"').run()
    at.text_input(key="rules_save_note").set_value("mine").run()
    at.button(key="rules_save").click().run()  # refused before the text is even read
    assert "Only managers can save the team's rules" in errors(at)
    assert RULES_KEY not in at.session_state
    assert snapshot(db) == before


def test_a_manager_imports(db: Path) -> None:
    at = app_page(MANAGER, "pages/data.py")
    at.file_uploader(key="partners_file").upload("partners.csv", PARTNERS_CSV, "text/csv")
    at.run()
    at.button(key="partners_import").click().run()
    assert not at.error and not at.exception
    assert rows(db, "SELECT count(*) FROM partners WHERE partner_id = 'P9001'") == [(1,)]
    assert rows(db, "SELECT actor FROM audit_log WHERE action = 'import_partners'")[-1] == (
        MANAGER["email"],
    )


# --- Simulate: commit, masking, downloads --------------------------------------------


def simulate(user: dict | None) -> AppTest:
    at = app_page(user, "pages/simulate.py")
    at.multiselect(key="policies").set_value(["round-robin"])
    at.button[0].click()  # the form's "Run simulation"
    at.run()
    assert not at.exception
    return at


def try_commit(at: AppTest) -> AppTest:
    at.checkbox(key="commit_confirm").check().run()
    at.button(key="commit_button").click().run()
    assert not at.exception
    return at


def test_a_viewer_simulates_but_cannot_commit(demo_db: Path) -> None:
    at = simulate(VIEWER)
    before = snapshot(demo_db)
    try_commit(at)
    assert "Only managers can commit referrals" in errors(at)
    assert snapshot(demo_db) == before


def test_a_manager_commits_as_themselves(demo_db: Path) -> None:
    before = rows(demo_db, "SELECT count(*) FROM referrals")[0][0]
    at = try_commit(simulate(MANAGER))
    assert not at.error
    assert rows(demo_db, "SELECT count(*) FROM referrals")[0][0] > before
    assert rows(demo_db, "SELECT actor FROM runs ORDER BY run_id DESC LIMIT 1") == [
        (MANAGER["email"],)
    ]


def customer_emails(path: Path) -> set[str]:
    return {e for (e,) in rows(path, "SELECT contact_email FROM customers")}


@pytest.mark.parametrize(("user", "masked"), [(VIEWER, True), (MANAGER, False), (None, False)])
def test_customer_emails_on_the_referrals_page(db: Path, user: dict | None, masked: bool) -> None:
    at = referrals_page(user)
    options = at.selectbox(key="ref_message").options  # labels: "customer → EMAIL  ID"
    at.selectbox(key="ref_message").select_index(
        next(i for i, o in enumerate(options) if o.startswith("customer"))
    ).run()
    text = page_text(at)
    shown = {e for e in customer_emails(db) if e in text}
    if masked:
        assert not shown
        assert "***@" in text
    else:
        assert shown


@pytest.mark.parametrize(("user", "masked"), [(VIEWER, True), (MANAGER, False)])
def test_customer_emails_in_the_simulated_email_preview(
    demo_db: Path, user: dict, masked: bool
) -> None:
    at = simulate(user)
    text = page_text(at)
    shown = {e for e in customer_emails(demo_db) if e in text}
    assert (not shown) if masked else shown
    if masked:
        assert "***@" in text


def test_a_download_of_personal_data_is_audited(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    viewer = auth.User("Val Viewer", VIEWER["email"], "viewer")
    monkeypatch.setattr(auth, "current_user", lambda: viewer)
    auth.export_callback("simulation-round-robin.csv", "FTCQ backlog")()
    assert rows(
        db,
        "SELECT actor, action, subject, details FROM audit_log WHERE action = ?",
        [auth.EXPORT_ACTION],
    ) == [(VIEWER["email"], "export_personal_data", "simulation-round-robin.csv", "FTCQ backlog")]


def test_the_result_downloads_carry_the_audit_callback(
    demo_db: Path, wired: list[tuple[str, str]]
) -> None:
    at = simulate(None)
    assert len(at.get("download_button")) == 3
    assert [subject for subject, _ in wired[-3:]] == [
        f"simulation-round-robin{suffix}" for suffix in (".csv", ".parquet", ".xlsx")
    ]


# --- Customer names ------------------------------------------------------------------


def customer_names(path: Path) -> set[str]:
    # Long names only: a short one ("Iris") could occur in other words on the page.
    return {n for (n,) in rows(path, "SELECT name FROM customers") if n and len(n) >= 8}


def names_shown(at: AppTest, path: Path) -> set[str]:
    text = page_text(at)
    return {n for n in customer_names(path) if n in text}


# Both worlds are the demo's, asked for by name inside the test: named here too, so that
# conftest.py runs it among the tests that need the demo's build, not before it is done.
@pytest.mark.usefixtures("demo_db_master")
@pytest.mark.parametrize(
    ("open_as", "world"),
    [
        (lambda user: open_page("pages/referrals.py", user), "committed_db"),
        (lambda user: open_app("pages/capacity.py", user), "committed_db"),
        (lambda user: simulate(user), "demo_db"),  # the backlog still waits there
    ],
    ids=["referrals", "capacity", "simulate"],
)
def test_a_viewer_sees_no_customer_name_a_manager_sees(
    open_as, world: str, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(world)
    seen_by_manager = names_shown(open_as(MANAGER), path)
    assert seen_by_manager  # the page does show customer names, in full, to a manager
    viewer = open_as(VIEWER)
    assert names_shown(viewer, path) == set()
    assert "***" in page_text(viewer)


def test_a_viewer_sees_no_customer_name_in_an_outbox_message(db: Path) -> None:
    for user, masked in ((MANAGER, False), (VIEWER, True)):
        at = open_page("pages/referrals.py", user)
        options = at.selectbox(key="ref_message").options
        at.selectbox(key="ref_message").select_index(
            next(i for i, o in enumerate(options) if o.startswith("customer"))
        ).run()
        assert not at.exception
        picked = at.selectbox(key="ref_message").value
        (tenant,) = rows(db, "SELECT tenant_id FROM outbox WHERE message_id = ?", [picked])[0]
        (name,) = rows(db, "SELECT name FROM customers WHERE tenant_id = ?", [tenant])[0]
        body = " ".join(c.value for c in at.code)
        assert (name not in body and name not in page_text(at)) if masked else name in body


@pytest.mark.usefixtures("demo_db")
def test_a_viewer_sees_no_customer_name_in_an_upload_preview() -> None:
    """The Data page previews an uploaded customers file: names (and emails) masked for a
    viewer, in full for a manager."""
    import io

    from engine.cohorts import synthetic_cohort

    cohort = synthetic_cohort(5, 3)
    names = {n for n in cohort["name"].to_list() if len(n) >= 8}
    assert names
    data = io.BytesIO()
    cohort.write_parquet(data)
    for user, masked in ((MANAGER, False), (VIEWER, True)):
        at = open_page("pages/data.py", user)
        at.file_uploader(key="customers_file").upload("cohort.parquet", data.getvalue())
        at.run()
        assert not at.exception
        shown = {n for n in names if n in page_text(at)}
        assert shown == (set() if masked else names)


def test_mask_name_keeps_the_first_letter() -> None:
    assert masked("name", "Müller Maschinenbau AG", "", None) == ["M***", "***", None]
    frame = pl.DataFrame({"name": ["Ab"], "seats": [3]})
    assert mask_personal(frame).to_dicts() == [{"name": "A***", "seats": 3}]
