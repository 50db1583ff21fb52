"""Rules: the shipped defaults, the ISO tables behind them, and the strict loader's errors."""

from __future__ import annotations

import re
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.iso import COUNTRIES, LANGUAGES
from engine.rules import (
    DEFAULT_RULES_PATH,
    Rules,
    RulesError,
    load_rules,
    parse_rules,
    parse_rules_dict,
    to_dict,
    to_toml,
)

DOMAIN_WORKLOADS = (
    "exchange",
    "sharepoint",
    "onedrive",
    "teams",
    "m365-apps",
    "intune",
    "entra-id",
    "windows",
    "defender",
    "purview",
    "viva",
)


@pytest.fixture(scope="module")
def shipped() -> Rules:
    return load_rules()


@pytest.fixture(scope="module")
def shipped_text() -> str:
    return DEFAULT_RULES_PATH.read_text(encoding="utf-8")


# --- ISO tables ------------------------------------------------------------------------------


def test_iso_table_sizes() -> None:
    assert len(COUNTRIES) == 249
    assert len(LANGUAGES) in (183, 184)


def test_iso_code_shapes() -> None:
    assert all(re.fullmatch(r"[A-Z]{2}", code) for code in COUNTRIES)
    assert all(c.code == code and c.name for code, c in COUNTRIES.items())
    assert {c.continent for c in COUNTRIES.values()} == {
        "Africa",
        "Americas",
        "Antarctica",
        "Asia",
        "Europe",
        "Oceania",
    }
    assert all(re.fullmatch(r"[a-z]{2}", code) and name for code, name in LANGUAGES.items())
    assert "XK" not in COUNTRIES  # Kosovo: user-assigned, not officially assigned


# --- the shipped defaults ----------------------------------------------------------------------


def test_shipped_rules_match_domain_defaults(shipped: Rules) -> None:
    assert shipped.min_seats == 150
    assert shipped.eligible_workloads == DOMAIN_WORKLOADS
    assert shipped.referral_consent_default is True
    assert shipped.capacity_scale == 1.0
    assert shipped.disabled_partners == frozenset()
    assert shipped.when_full == "css"
    assert shipped.max_declines == 2
    assert shipped.max_partners_per_customer == 1
    assert shipped.css_workloads == ()
    assert dict(shipped.queue_of_region) == {
        "Americas": "CSS Americas",
        "EMEA": "CSS EMEA",
        "APAC": "CSS APAC",
    }


def test_shipped_rules_equal_dataclass_defaults_besides_regions(shipped: Rules) -> None:
    bare = Rules()
    for key in (
        "min_seats",
        "eligible_workloads",
        "referral_consent_default",
        "capacity_scale",
        "disabled_partners",
        "when_full",
        "max_declines",
        "max_partners_per_customer",
        "css_workloads",
    ):
        assert getattr(shipped, key) == getattr(bare, key), key


def test_every_country_has_a_region_with_a_queue(shipped: Rules) -> None:
    assert set(shipped.region_of_country) == set(COUNTRIES)
    for code in COUNTRIES:
        assert shipped.queue_for(code).startswith("CSS ")


def test_shipped_region_lists_are_sorted_and_disjoint(shipped_text: str) -> None:
    regions = tomllib.loads(shipped_text)["regions"]
    seen: list[str] = []
    for codes in regions.values():
        assert codes == sorted(codes)
        seen.extend(codes)
    assert len(seen) == len(set(seen)) == len(COUNTRIES)


@pytest.mark.parametrize(
    ("country", "queue"),
    [
        ("US", "CSS Americas"),
        ("BR", "CSS Americas"),
        ("CA", "CSS Americas"),
        ("GL", "CSS Americas"),
        ("GS", "CSS Americas"),
        ("DE", "CSS EMEA"),
        ("ZA", "CSS EMEA"),
        ("AE", "CSS EMEA"),
        ("TR", "CSS EMEA"),
        ("IL", "CSS EMEA"),
        ("BV", "CSS EMEA"),
        ("TF", "CSS EMEA"),
        ("JP", "CSS APAC"),
        ("AU", "CSS APAC"),
        ("IN", "CSS APAC"),
        ("AQ", "CSS APAC"),
        ("HM", "CSS APAC"),
    ],
)
def test_queue_spot_checks(shipped: Rules, country: str, queue: str) -> None:
    assert shipped.queue_for(country) == queue


# --- the strict loader's errors ----------------------------------------------------------------

_QUEUES = '[queues]\nAmericas = "CSS Americas"\nEMEA = "CSS EMEA"\nAPAC = "CSS APAC"\n'


def _regions(extra: dict[str, list[str]] | None = None, drop: str | None = None) -> str:
    """A [regions] table covering every country (by continent), with edits."""
    groups: dict[str, list[str]] = {"Americas": [], "EMEA": [], "APAC": []}
    for code, c in COUNTRIES.items():
        if code == drop:
            continue
        if c.continent == "Americas":
            groups["Americas"].append(code)
        elif c.continent in ("Europe", "Africa"):
            groups["EMEA"].append(code)
        else:
            groups["APAC"].append(code)
    for region, codes in (extra or {}).items():
        groups.setdefault(region, []).extend(codes)
    body = "\n".join(f"{r} = [{', '.join(repr(c) for c in cs)}]" for r, cs in groups.items())
    return "[regions]\n" + body.replace("'", '"') + "\n"


def test_helper_builds_valid_rules() -> None:
    rules = parse_rules("min_seats = 5\n" + _QUEUES + _regions())
    assert rules.min_seats == 5


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("min_seat = 1\n" + _QUEUES + _regions(), "min_seat"),
        ('min_seats = "150"\n' + _QUEUES + _regions(), "min_seats"),
        ("min_seats = true\n" + _QUEUES + _regions(), "min_seats"),
        ("min_seats = 1.5\n" + _QUEUES + _regions(), "min_seats"),
        ("min_seats = -1\n" + _QUEUES + _regions(), "min_seats"),
        ('eligible_workloads = "teams"\n' + _QUEUES + _regions(), "eligible_workloads"),
        ('eligible_workloads = ["teams", ""]\n' + _QUEUES + _regions(), "eligible_workloads"),
        ('when_full = "wait"\n' + _QUEUES + _regions(), "when_full"),
        ("max_declines = 0\n" + _QUEUES + _regions(), "max_declines"),
        ("capacity_scale = -0.5\n" + _QUEUES + _regions(), "capacity_scale"),
        (_QUEUES + _regions({"EMEA": ["XX"]}), "regions.EMEA"),
        (_QUEUES + _regions({"APAC": ["DE"]}), "regions.APAC"),
        (_QUEUES + _regions(drop="FR"), "regions"),
        (_QUEUES + _regions({"LATAM": ["US"]}), "regions.LATAM"),
        (_regions(), "queues"),
        ("[queues]\nEMEA = 3\n" + _regions(), "queues.EMEA"),
        (_QUEUES, "regions"),
        ("max_partners_per_customer = 4\n" + _QUEUES + _regions(), "max_partners_per_customer"),
        ("max_partners_per_customer = 0\n" + _QUEUES + _regions(), "max_partners_per_customer"),
        ('max_partners_per_customer = "2"\n' + _QUEUES + _regions(), "max_partners_per_customer"),
        ('css_workloads = ["dynamics-365"]\n' + _QUEUES + _regions(), "css_workloads"),
        ('css_workloads = "defender"\n' + _QUEUES + _regions(), "css_workloads"),
    ],
    ids=[
        "unknown-key",
        "min_seats-text",
        "min_seats-bool",
        "min_seats-float",
        "min_seats-negative",
        "workloads-not-list",
        "workloads-empty-entry",
        "bad-when_full",
        "max_declines-zero",
        "capacity-negative",
        "country-not-iso",
        "country-in-two-regions",
        "country-missing",
        "region-without-queue",
        "missing-queues",
        "queue-not-text",
        "missing-regions",
        "split-limit-4",
        "split-limit-0",
        "split-limit-text",
        "css-workload-not-eligible",
        "css-workloads-not-list",
    ],
)
def test_bad_rules_name_the_key(text: str, key: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_rules(text, source="t.toml")
    assert f"t.toml: {key}: " in str(info.value)


def test_specific_messages() -> None:
    with pytest.raises(RulesError, match="'XX' is not an ISO 3166-1"):
        parse_rules(_QUEUES + _regions({"EMEA": ["XX"]}))
    with pytest.raises(RulesError, match="DE is already in region EMEA"):
        parse_rules(_QUEUES + _regions({"APAC": ["DE"]}))
    with pytest.raises(RulesError, match="missing FR"):
        parse_rules(_QUEUES + _regions(drop="FR"))


def test_css_workloads_are_eligible_workloads_in_one_line() -> None:
    """A CSS workload must be one of the eligible workloads (of the same file), said in
    one line that names the key, the bad id and the choices."""
    text = 'eligible_workloads = ["exchange", "defender"]\ncss_workloads = ["Teams"]\n'
    with pytest.raises(RulesError) as info:
        parse_rules(text + _QUEUES + _regions(), source="t.toml")
    message = str(info.value)
    assert message == (
        "t.toml: css_workloads: 'teams' is not an eligible workload; "
        "expected some of exchange, defender"
    )
    ok = parse_rules('css_workloads = [" Defender "]\n' + _QUEUES + _regions())
    assert ok.css_workloads == ("defender",)


def test_the_split_limit_is_one_two_or_three() -> None:
    for n in (1, 2, 3):
        text = f"max_partners_per_customer = {n}\n" + _QUEUES + _regions()
        assert parse_rules(text).max_partners_per_customer == n
    with pytest.raises(RulesError, match="got 4; expected 1, 2 or 3"):
        parse_rules("max_partners_per_customer = 4\n" + _QUEUES + _regions())


def test_invalid_toml() -> None:
    with pytest.raises(RulesError, match=r"^t\.toml: not valid TOML"):
        parse_rules("min_seats = = 1\n", source="t.toml")


def test_missing_file(tmp_path) -> None:
    with pytest.raises(RulesError, match="no such rules file"):
        load_rules(tmp_path / "nope.toml")


def test_country_codes_are_case_insensitive() -> None:
    text = (_QUEUES + _regions(drop="FR")).replace("EMEA = [", 'EMEA = ["fr", ', 1)
    assert parse_rules(text).queue_for("FR") == "CSS EMEA"


# --- round trip and replace --------------------------------------------------------------------


def test_to_toml_round_trips(shipped: Rules) -> None:
    assert parse_rules(to_toml(shipped)) == shipped


def test_to_toml_round_trips_changed_knobs(shipped: Rules) -> None:
    changed = shipped.replace(
        min_seats=0,
        capacity_scale=0.5,
        when_full="hold",
        disabled_partners={"P2", "P1"},
        max_partners_per_customer=3,
        css_workloads=("defender", "purview"),
    )
    assert parse_rules(to_toml(changed)) == changed


@given(st.frozensets(st.text(min_size=1).filter(str.strip), max_size=4))
@settings(max_examples=100, deadline=None)
def test_to_toml_round_trips_any_partner_ids(ids: frozenset[str]) -> None:
    rules = load_rules().replace(disabled_partners={i.strip() for i in ids})
    assert parse_rules(to_toml(rules)) == rules


def test_to_toml_round_trips_non_ascii_region_names(shipped: Rules) -> None:
    data = to_dict(shipped)
    data["queues"] = {"Amérique": 'CSS "Amériques"', "EMEA": "CSS EMEA", "APAC": "CSS APAC"}
    data["regions"]["Amérique"] = data["regions"].pop("Americas")
    rules = parse_rules_dict(data)
    assert parse_rules(to_toml(rules)) == rules


@pytest.mark.parametrize("value", ["nan", "inf", "+inf"])
def test_capacity_scale_must_be_finite(value: str) -> None:
    with pytest.raises(RulesError, match="capacity_scale: "):
        parse_rules(f"capacity_scale = {value}\n" + _QUEUES + _regions())


def test_replace(shipped: Rules) -> None:
    changed = shipped.replace(min_seats=10, disabled_partners={"P1"})
    assert changed.min_seats == 10
    assert changed.disabled_partners == frozenset({"P1"})
    assert changed.region_of_country == shipped.region_of_country
    assert shipped.min_seats == 150  # the original is untouched


def test_replace_validates(shipped: Rules) -> None:
    with pytest.raises(RulesError, match="overrides: min_seats: "):
        shipped.replace(min_seats=-1)
    with pytest.raises(RulesError, match="overrides: bogus: unknown key"):
        shipped.replace(bogus=1)


# --- property: the loader fails only with RulesError -------------------------------------------

_json_ish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
_KEYS = [
    "min_seats",
    "referral_consent_default",
    "capacity_scale",
    "when_full",
    "max_declines",
    "eligible_workloads",
    "disabled_partners",
]
_VALID = to_dict(load_rules())


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_KEYS), _json_ish | st.sampled_from(["css", "hold"])))
def test_random_scalars_parse_or_raise_rules_error(overrides: dict) -> None:
    data = {"queues": _VALID["queues"], "regions": _VALID["regions"], **overrides}
    try:
        rules = parse_rules_dict(data)
    except RulesError as exc:
        assert str(exc).startswith("rules: ")
        return
    for key, value in overrides.items():
        if key in ("min_seats", "max_declines", "when_full", "referral_consent_default"):
            assert getattr(rules, key) == value


def test_invalid_toml_names_the_key_on_its_line() -> None:
    text = "referral_consent_default = true\nmin_seats = abc\n"
    with pytest.raises(RulesError) as caught:
        parse_rules(text, source="t.toml")
    assert str(caught.value) == "t.toml: not valid TOML in min_seats, line 2: invalid value"
