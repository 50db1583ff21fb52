"""The world map's shape and its data: every country of ours can be drawn, gaps are marked.

The AppTests of the maps on their pages are in tests/test_app_capacity.py and
tests/test_app_fairness.py; the browser test that the map draws and a click filters is
in tests/browser/test_pages.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from engine.iso import COUNTRIES
from ui import maps

ROOT = Path(__file__).resolve().parent.parent


def test_the_shape_loads_and_draws_every_demo_country() -> None:
    topo = maps.shape()
    geometries = topo["objects"]["countries"]["geometries"]
    assert len(geometries) == 177  # Natural Earth 110m, world-atlas 2.0.2
    ours = pl.read_csv(ROOT / "data" / "demo" / "countries.csv")["code"].to_list()
    assert set(ours) <= maps.drawn_codes(), set(ours) - maps.drawn_codes()
    # Every shape with an id is looked up; dots stand for the countries too small for it.
    places = maps.places()
    keys = set(places["atlas_key"].drop_nulls().to_list())
    with_ids = {g["id"] for g in geometries if "id" in g}
    assert with_ids <= keys
    dots = places.filter(pl.col("atlas_key").is_null())
    assert {"SG", "HK"} <= set(dots["code"].to_list())
    assert dots["lon"].is_between(-180, 180).all() and dots["lat"].is_between(-90, 90).all()


def test_the_atlas_table_holds_iso_codes_only() -> None:
    places = maps.places()
    assert set(places["code"].to_list()) <= set(COUNTRIES)
    # Shapes without an id: N. Cyprus and Somaliland are drawn with the ISO country they
    # belong to; Kosovo has no ISO 3166-1 code, so it stays grey.
    named = places.filter(~pl.col("atlas_key").str.contains(r"^\d+$"))
    assert dict(named.select("atlas_key", "code").iter_rows()) == {
        "N. Cyprus": "CY",
        "Somaliland": "SO",
    }


def test_the_shape_is_read_once() -> None:
    assert maps.shape() is maps.shape()
    assert maps.places() is maps.places()


def seats(*rows: tuple[str, int, int, str]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"key": k, "label": k, "partners": p, "free_seats": f, "backlog": 1, "status": s}
            for k, p, f, s in rows
        ]
    )


def test_seat_bands_mark_gaps_apart_from_free_seats() -> None:
    frame = seats(
        ("IS", 0, 0, "no partner"),
        ("IL", 3, 0, "all full"),
        ("KR", 5, 1, "room"),
        ("SE", 9, 196, "room"),
        ("US", 53, 1366, "room"),
    )
    bands = dict(maps.seat_bands(frame).select("key", "band").iter_rows())
    assert bands == {
        "IS": "no partner",
        "IL": "all full",
        "KR": "1-49 free",
        "SE": "50-199 free",
        "US": "500+ free",
    }


def test_the_seats_map_legend_names_both_gaps_and_picks_a_country() -> None:
    spec = maps.seats_map(seats(("IS", 0, 0, "no partner")), "sub")
    text = json.dumps(spec)
    shapes = spec["layer"][1]
    assert shapes["encoding"]["color"]["scale"]["domain"][:2] == ["no partner", "all full"]
    assert [(p["name"], p["select"]["fields"]) for p in spec["params"]] == [(maps.PICK, ["code"])]
    assert '"type": "topojson"' in text and '"feature": "countries"' in text
    assert text.count('"Fiji"') == 1, "the shape is shipped once, to the layer"


def test_picked_reads_the_selection_event() -> None:
    assert maps.picked(None) is None
    assert maps.picked({"selection": {maps.PICK: []}}) is None
    assert maps.picked({"selection": {maps.PICK: [{"code": "SE"}]}}) == "SE"
