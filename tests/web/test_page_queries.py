"""The catalog page stays usable at 100k adapters: every sortable column's first and later
pages are index walks (no OFFSET, no sort of every row), checked on the plans SQLite chooses
for the statements the page really runs. No timing assertions: plans, not clocks."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from zoo.server.web import paging
from zoo.server.web.catalog_pages import PAGE_SIZE, SORTABLE, _page
from zoo.storage.db import open_catalog


def _statements(catalog, fn) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []

    def grab(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    event.listen(catalog.engine, "before_cursor_execute", grab)
    try:
        result = catalog.run(fn, readonly=True)
    finally:
        event.remove(catalog.engine, "before_cursor_execute", grab)
    return result, seen


@pytest.mark.parametrize("sort", [d + c for c in SORTABLE for d in ("", "-")])
def test_every_sortable_page_is_an_index_walk(seeded, sort):
    catalog_url, _store, facts, _secrets = seeded
    with open_catalog(catalog_url) as catalog:
        one, first = _statements(catalog, lambda s: _page(s, "", sort, None))
        assert len(one.rows) == PAGE_SIZE and one.total == facts.total + len(facts.real)
        assert one.prev_cursor is None and one.next_cursor is not None
        two, second = _statements(
            catalog, lambda s: _page(s, "", sort, paging.decode(one.next_cursor)))
        assert len(two.rows) == PAGE_SIZE and not {r["id"] for r in one.rows} & {
            r["id"] for r in two.rows}
        back, third = _statements(  # "previous" from page 2 is page 1 again, in order
            catalog, lambda s: _page(s, "", sort, paging.decode(two.prev_cursor), backward=True))
        assert [r["id"] for r in back.rows] == [r["id"] for r in one.rows]
        assert back.prev_cursor is None and back.next_cursor == one.next_cursor
        with catalog.engine.connect() as conn:
            for statement, params in first + second + third:
                if " OFFSET " in statement.upper():  # SQLite spells LIMIT n as LIMIT n OFFSET 0
                    assert statement.rstrip().upper().endswith("OFFSET ?") and params[-1] == 0
                plan = [row[-1] for row in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + statement, params)]
                assert "USE TEMP B-TREE FOR ORDER BY" not in plan, (sort, statement, plan)
                scans = [step for step in plan if step.startswith(("SCAN adapters",
                                                                   "SEARCH adapters"))]
                assert all("INDEX" in step for step in scans), (sort, plan)


def test_a_common_tag_filter_pages_without_sorting_its_matches(seeded):
    """tag:prod matches 1% of 100k: the page walks the order's index and probes the tag."""
    catalog_url, *_ = seeded
    with open_catalog(catalog_url) as catalog:
        one, stmts = _statements(catalog, lambda s: _page(s, "tag:prod", "-created", None))
        assert len(one.rows) == PAGE_SIZE and one.next_cursor is not None and one.total is None
        assert all("prod" in r["tags"] for r in one.rows)
        with catalog.engine.connect() as conn:
            for statement, params in stmts:
                plan = [row[-1] for row in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + statement, params)]
                assert not any("TEMP B-TREE FOR ORDER BY" in step for step in plan), plan


def _pg_nodes(plan: dict) -> list[dict]:
    nodes, todo = [], [plan]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", []))
    return nodes


def test_pages_on_postgresql_walk_indexes(pg_url, tmp_path):
    """The same pages on PostgreSQL (a team's catalog): no sequential scan of the adapters and
    no sort of every match, forward and backward, for every sortable column."""
    from seed import seed

    from zoo.storage.db import init_catalog

    init_catalog(pg_url)
    with open_catalog(pg_url) as catalog:
        facts = seed(catalog, str(tmp_path / "store"), tmp_path / "work")
        for sort in [d + c for c in SORTABLE for d in ("", "-")]:
            one, first = _statements(catalog, lambda s, sort=sort: _page(s, "", sort, None))
            assert one.total == facts.total + len(facts.real)
            two, second = _statements(catalog, lambda s, sort=sort, one=one: _page(
                s, "", sort, paging.decode(one.next_cursor)))
            back, third = _statements(catalog, lambda s, sort=sort, two=two: _page(
                s, "", sort, paging.decode(two.prev_cursor), backward=True))
            assert [r["id"] for r in back.rows] == [r["id"] for r in one.rows]
            with catalog.engine.connect() as conn:
                for statement, params in first + second + third:
                    if "count(" in statement.lower():
                        continue  # the catalog's size: one count, not a page
                    (plan,) = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement,
                                                   params).scalar_one()
                    nodes = _pg_nodes(plan["Plan"])
                    kinds = [(n["Node Type"], n.get("Relation Name")) for n in nodes]
                    assert ("Seq Scan", "adapters") not in kinds, (sort, kinds)
                    assert "Sort" not in [k for k, _ in kinds], (sort, kinds)
