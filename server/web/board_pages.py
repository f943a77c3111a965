"""The leaderboard page: dataset and metric pickers, the ranked table, and its picture."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from zoo.errors import NotFoundError, QuerySyntaxError
from zoo.server.web import session as web
from zoo.server.web.chart import render_svg
from zoo.server.web.context import catalog_of, read
from zoo.server.web.render import Timer, WebRoute, page
from zoo.storage.browse import DatasetChoice, eval_datasets
from zoo.storage.evals import LOWER_IS_BETTER, leaderboard

router = APIRouter(route_class=WebRoute, include_in_schema=False)
TOP_CHOICES = (10, 20, 50, 100, 500)
PREFERRED_METRICS = ("accuracy", "f1", "loss")


def _pick(choices: list[DatasetChoice], dataset: str, metric: str) -> tuple[DatasetChoice | None, str]:
    """The chosen dataset (by sha256 or prefix; else the first) and a metric it has."""
    chosen = next((d for d in choices if dataset and d.fingerprint.startswith(dataset)), None)
    if chosen is None and dataset:
        raise NotFoundError(f"no results for a dataset with sha256 {dataset[:64]}")
    chosen = chosen or (choices[0] if choices else None)
    if chosen is None:
        return None, ""
    if metric not in chosen.metrics:
        metric = next((m for m in PREFERRED_METRICS if m in chosen.metrics), chosen.metrics[0])
    return chosen, metric


@router.get("/leaderboard")
def leaderboard_page(request: Request, dataset: str = "", metric: str = "", q: str = "",
                     top: int = Query(50, ge=1, le=500)) -> Response:
    """Adapters ranked by their latest ``metric`` on ``dataset``, optionally among a query."""
    session = web.require(request)
    timer = Timer()
    choices = timer(lambda: read(request, eval_datasets))
    chosen, metric = _pick(choices, dataset, metric)
    rows, message, svg = [], None, ""
    if chosen is not None:
        try:
            rows = timer(lambda: leaderboard(catalog_of(request), dataset=chosen.fingerprint,
                                             metric=metric, query=q or None, top=top))
        except (NotFoundError, QuerySyntaxError) as exc:  # shown above the table, the form kept
            message = str(exc)
        higher = metric not in LOWER_IS_BETTER
        svg = render_svg(rows, metric=metric, higher_is_better=higher, dataset=chosen.label)
    return page(request, "leaderboard.html", session=session, timer=timer, choices=choices,
                chosen=chosen, metric=metric, q=q, top=top, top_choices=TOP_CHOICES, rows=rows,
                svg=svg, message=message, lower_is_better=metric in LOWER_IS_BETTER)
