"""The web catalog's pieces without a browser: the SVG picture, page cursors, CSRF and the
redirect after sign-in."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from zoo.errors import QuerySyntaxError
from zoo.server.web import paging, session
from zoo.server.web.chart import render_svg

SVG = "{http://www.w3.org/2000/svg}"


def _rows(values, params=None):
    params = params or [1000 * (i + 1) for i in range(len(values))]
    return [{"rank": i + 1, "id": f"id{i}", "name": f"ad-{i}", "value": v, "params": p, "r": 8,
             "unshared_r": 1 if i % 2 else 8, "share_a": 2, "share_b": 2}
            for i, (v, p) in enumerate(zip(values, params, strict=True))]


def test_picture_is_valid_svg_with_one_linked_point_per_row():
    rows = _rows([0.9, 0.8, 0.85, 0.5])
    root = ET.fromstring(str(render_svg(rows, metric="accuracy", higher_is_better=True,
                                        dataset="sst2@abc")))
    points = root.findall(f".//{SVG}circle[@class='point']")
    assert len(points) == len(rows)
    links = {a.get("href") for a in root.findall(f".//{SVG}a")}
    assert links == {f"/adapters/id{i}" for i in range(4)}
    front = root.find(f".//{SVG}polyline[@class='front']")
    # front by params: 1000 (0.9) only — every bigger adapter is worse
    assert len(front.get("points").split()) == 1
    labels = [t.text for t in root.findall(f".//{SVG}text[@class='label']")]
    assert labels[0] == "#1 ad-0"


def test_picture_escapes_names_and_survives_equal_values():
    rows = _rows([0.5, 0.5], params=[10, 10])
    rows[0]["name"] = '<script>alert("x")</script>'
    svg = str(render_svg(rows, metric="loss", higher_is_better=False, dataset="d<1>"))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    root = ET.fromstring(svg)
    ys = {float(c.get("cy")) for c in root.findall(f".//{SVG}circle[@class='point']")}
    assert len(ys) == 1 and all(0 < y < 420 for y in ys)  # centred, not off the canvas
    assert "lower is better" in svg


def test_empty_board_draws_nothing():
    assert str(render_svg([], metric="accuracy", higher_is_better=True, dataset="d")) == ""


@pytest.mark.parametrize("after", [("01abc", "01abc"), (4096, "01x"), (0.25, "01y"),
                                   (None, "01z"), ("a b/c", "01w")])
def test_cursor_round_trips(after):
    assert paging.decode(paging.encode(after)) == after


@pytest.mark.parametrize("bad", ["!!!", "e30", paging.encode(([1], "x")), "W10"])
def test_cursor_refuses_what_it_did_not_write(bad):
    with pytest.raises(QuerySyntaxError, match="bad page cursor"):
        paging.decode(bad)


def test_csrf_token_is_per_session_and_checked_in_constant_time():
    a, b = session.csrf_for("zoo_a"), session.csrf_for("zoo_b")
    assert a != b and len(a) == 64
    session.check_csrf(a, a)
    for given in (b, "", None, a[:-1]):
        with pytest.raises(session.CsrfRefused):
            session.check_csrf(a, given)
    with pytest.raises(session.CsrfRefused):
        session.check_csrf(None, "anything")  # no expected value: never accepted


@pytest.mark.parametrize(("url", "kept"), [
    ("/adapters?q=tag:prod", "/adapters?q=tag:prod"), ("//evil.example/x", "/"),
    ("https://evil.example/", "/"), ("/\\evil.example", "/"), ("", "/"), (None, "/")])
def test_sign_in_returns_only_to_local_paths(url, kept):
    assert session.safe_next(url) == kept
