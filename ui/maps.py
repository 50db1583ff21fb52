"""World maps: countries coloured by a number of ours, drawn with Altair from the shape
kept in ``data/world/`` (nothing is fetched at run time; see its README).

The shape is Natural Earth's 110m countries (the ``world-atlas`` package), keyed by ISO
3166-1 numeric ids; ``data/world/atlas_countries.csv`` turns them into the alpha-2 codes
our data uses. Countries too small for the 110m shape (Singapore, Hong Kong, Malta, ...)
are drawn as dots at a point of theirs. Both files are read once per process.

Every map takes a frame already aggregated (``key`` = alpha-2 code, ``label``, and the
columns it draws): the chart only looks countries up and colours them. A map is a
Vega-Lite spec for ``st.vega_lite_chart``, the shape added to it once built.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import altair as alt
import polars as pl

from store.capacity import ALL_FULL, NO_PARTNER
from ui.charts import LIGHT_GREY, ORANGE, RED

WORLD = Path(__file__).resolve().parent.parent / "data" / "world"
SHAPE = WORLD / "countries-110m.json"
PLACES = WORLD / "atlas_countries.csv"
#: The name of the map's point selection: ``event.selection[PICK]`` lists the picked
#: countries as ``{"code": "SE"}``.
PICK = "country"
#: The name of the shape among a map's datasets.
SHAPE_NAME = "world_countries_110m"
_ROWS = "map_countries"  # the rows of the countries drawn as shapes
_DOTS = "map_dots"  # ... and of those drawn as dots
#: Free-seat bands of the capacity map, after the two statuses (lower bounds).
SEAT_BANDS = ((1, "1-49 free"), (50, "50-199 free"), (200, "200-499 free"), (500, "500+ free"))
_BLUES = ["#c6dbef", "#6baed6", "#2171b5", "#08306b"]
#: Countries without an id in the shape are looked up by their name there.
_ATLAS_KEY = "isValid(datum.id) ? datum.id : datum.properties.name"
_ANTARCTICA = "010"


@functools.cache
def shape() -> dict[str, Any]:
    """The TopoJSON of the world's countries (read once per process)."""
    with SHAPE.open(encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


@functools.cache
def places() -> pl.DataFrame:
    """``atlas_key`` (the shape's id, or its name for the few it gives no id), ``code``
    (alpha-2) and ``lon, lat`` for countries drawn as a dot (null for shapes)."""
    return pl.read_csv(
        PLACES,
        schema={
            "atlas_key": pl.String,
            "code": pl.String,
            "atlas_name": pl.String,
            "lon": pl.Float64,
            "lat": pl.Float64,
        },
    )


def drawn_codes() -> set[str]:
    """The alpha-2 codes the map can show, as a shape or a dot."""
    return set(places()["code"].to_list())


def not_on_map(frame: pl.DataFrame) -> list[str]:
    """The ``key`` codes of ``frame`` the map cannot show (neither a shape nor a dot)."""
    return sorted(set(frame["key"].to_list()) - drawn_codes())


def _world(
    color: alt.Color, tooltip: list[alt.Tooltip], fields: list[str], pickable: bool
) -> dict[str, Any]:
    """The spec of a map without its data: grey countries under the countries of the
    rows (``_ROWS``, looked up by ``atlas_key``; ``fields`` are taken along) coloured by
    ``color``, and the small countries as dots (``_DOTS``). ``pickable``: a click picks
    a country (the :data:`PICK` selection)."""
    # Every dataset is named and filled in by ``_spec``: building and validating the
    # Altair chart costs 0.3 s, so it is done once per map; the shape (100 KB) is never
    # copied through Altair.
    topo = alt.Data(name=SHAPE_NAME, format=alt.DataFormat(type="topojson", feature="countries"))
    world = (
        alt.Chart()
        .transform_calculate(atlas_key=_ATLAS_KEY)
        .transform_filter(alt.datum.atlas_key != _ANTARCTICA)
    )
    land = world.mark_geoshape(fill=LIGHT_GREY, stroke="white", strokeWidth=0.5)
    lookup = alt.LookupData(data=alt.Data(name=_ROWS), key="atlas_key", fields=fields)
    shapes = (
        world.transform_lookup(lookup="atlas_key", from_=lookup)
        .transform_filter("isValid(datum.code)")
        .mark_geoshape(stroke="white", strokeWidth=0.5, cursor="pointer" if pickable else "default")
        .encode(color=color, tooltip=tooltip)
    )
    dots = (
        alt.Chart(alt.Data(name=_DOTS))
        .mark_circle(size=70, stroke="white", strokeWidth=1, opacity=1)
        .encode(longitude="lon:Q", latitude="lat:Q", color=color, tooltip=tooltip)
    )
    if pickable:
        pick = alt.selection_point(name=PICK, fields=["code"], on="click", clear="dblclick")
        shapes = shapes.add_params(pick).encode(
            opacity=alt.condition(pick, alt.value(1.0), alt.value(0.35))
        )
    chart = (
        alt.layer(land, shapes, dots, data=topo, title=alt.Title("", subtitle=""))
        .project(type="equalEarth")
        .properties(height=470, width="container")
    )
    return chart.to_dict()


def _spec(template: dict[str, Any], frame: pl.DataFrame, title: str, subtitle: str) -> dict:
    """A map's spec: ``template`` (from :func:`_world`) with the title and the rows of
    ``frame`` (``key`` = alpha-2 code) and the shape as its datasets (Streamlit keeps a
    TopoJSON dataset in the spec and ships the others as tables)."""
    placed = frame.rename({"key": "code"}).join(places(), on="code", how="inner")
    fields = [c for c in frame.columns if c != "key"]
    spec = copy.deepcopy(template)
    spec["title"] = {"text": title, "subtitle": subtitle}
    spec["datasets"] = {
        SHAPE_NAME: shape(),
        _ROWS: placed.filter(pl.col("atlas_key").is_not_null())
        .select("atlas_key", "code", *fields)
        .to_dicts(),
        _DOTS: placed.filter(pl.col("lon").is_not_null())
        .select("lon", "lat", "code", *fields)
        .to_dicts(),
    }
    return spec


def _tooltip(*fields: tuple[str, str, str]) -> list[alt.Tooltip]:
    """The country's name, then each (field, title, number format or "") of ``fields``."""
    return [alt.Tooltip("label:N", title="Country")] + [
        alt.Tooltip(field, title=title, format=fmt or alt.Undefined) for field, title, fmt in fields
    ]


def seat_bands(seats: pl.DataFrame) -> pl.DataFrame:
    """``store.capacity.country_seats`` with ``band``: its status when it has no room,
    else its band of free seats (:data:`SEAT_BANDS`)."""
    band = pl.when(pl.col("status") != "room").then(pl.col("status"))
    for low, name in reversed(SEAT_BANDS):
        band = band.when(pl.col("free_seats") >= low).then(pl.lit(name))
    return seats.with_columns(band.otherwise(pl.lit(SEAT_BANDS[0][1])).alias("band"))


@functools.cache
def _seats_template() -> dict[str, Any]:
    domain = [NO_PARTNER, ALL_FULL, *(name for _, name in SEAT_BANDS)]
    color = alt.Color(
        "band:N",
        title="Free seats",
        scale=alt.Scale(domain=domain, range=[RED, ORANGE, *_BLUES]),
        legend=alt.Legend(orient="bottom", symbolType="square", symbolSize=200, columns=6),
    )
    tooltip = _tooltip(
        ("band:N", "Free seats", ""),
        ("partners:Q", "Partners taking referrals", ""),
        ("free_seats:Q", "Free seats", ","),
        ("backlog:Q", "Backlog waiting", ","),
    )
    fields = ["code", "label", "band", "partners", "free_seats", "backlog", "status"]
    return _world(color, tooltip, fields, pickable=True)


def seats_map(seats: pl.DataFrame, subtitle: str) -> dict[str, Any]:
    """Free seats of the partners taking referrals per country (``country_seats``),
    "no partner" and "all full" in colours of their own; a click picks a country."""
    return _spec(_seats_template(), seat_bands(seats), "Free seats by country", subtitle)


@functools.cache
def _css_template() -> dict[str, Any]:
    color = alt.Color(
        "css_rate:Q",
        title="Sent to CSS",
        scale=alt.Scale(scheme="oranges", domain=[0, 1]),
        legend=alt.Legend(
            orient="bottom", format="%", gradientLength=300, values=[0, 0.25, 0.5, 0.75, 1]
        ),
    )
    tooltip = _tooltip(
        ("css_rate:Q", "Sent to CSS", ".0%"),
        ("css:Q", "Customers to CSS", ","),
        ("customers:Q", "Customers", ","),
    )
    fields = ["code", "label", "customers", "css", "css_rate"]
    return _world(color, tooltip, fields, pickable=False)


def css_map(rates: pl.DataFrame, subtitle: str) -> dict[str, Any]:
    """The share of customers sent to CSS per country (``key, label, customers, css,
    css_rate``); countries without customers stay grey."""
    return _spec(_css_template(), rates, "CSS fallback by country", subtitle)


def picked(event: Any) -> str | None:
    """The country a click picked on a :func:`seats_map` (None when none is)."""
    if event is None:
        return None
    rows = (event.get("selection") or {}).get(PICK) or []
    return rows[0].get("code") if rows else None
