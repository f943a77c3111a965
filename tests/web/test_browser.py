"""The web catalog in a real browser: Debian's chromium, driven by Playwright, against a real
uvicorn server over a 100k-adapter catalog. Every page is screenshotted."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(600)


def sign_in(page: Any, zoo: Any, name: str = "alice", next_path: str = "/adapters") -> None:
    page.goto(next_path)
    assert "/login" in page.url  # every page asks for a session first
    page.fill("#token", zoo.secrets[name])
    page.click("#signin")
    page.wait_for_url(f"**{next_path}*")


def snap(page: Any, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def timing(response: Any) -> str:
    """The page's own report of its catalog and template time (printed, never asserted)."""
    return response.headers.get("server-timing", "") if response else ""


def column(page: Any, table: str, css: str) -> list[str]:
    return [t.strip() for t in page.locator(f"{table} tbody td{css}").all_inner_texts()]


def numbers(texts: list[str]) -> list[int]:
    return [int(t.replace(",", "")) for t in texts]


def test_sign_in_refuses_bad_tokens_and_sets_a_safe_cookie(page, zoo_server, shots):
    page.goto("/adapters")
    assert "/login" in page.url
    snap(page, shots, "01-sign-in")
    for name in ("revoked", "expired"):
        page.fill("#token", zoo_server.secrets[name])
        page.click("#signin")
        assert "not valid" in page.inner_text("#error")
    page.fill("#token", "zoo_not-a-real-token")
    with page.expect_response(lambda r: r.url.endswith("/login")) as answer:
        page.click("#signin")
    assert answer.value.status == 401
    snap(page, shots, "02-sign-in-refused")
    assert not [c for c in page.context.cookies() if c["name"] == "zoo_session"]

    page.fill("#token", zoo_server.secrets["alice"])
    page.click("#signin")
    page.wait_for_url("**/adapters")
    assert page.inner_text("#who") == "alice" and page.inner_text("#rights") == "(read)"
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "zoo_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert page.evaluate("document.cookie") == ""  # scripts cannot read the session

    page.click("#signout")
    page.wait_for_url("**/login")
    page.goto("/jobs")
    assert "/login" in page.url


def test_catalog_query_sort_and_keyset_pages(page, zoo_server, shots):
    sign_in(page, zoo_server)
    total = zoo_server.facts.total + len(zoo_server.facts.real)
    assert page.inner_text("#summary").startswith(f"{total:,} adapters")
    assert page.locator("#adapters tbody tr").count() == 50
    snap(page, shots, "03-catalog")

    page.fill("#q", "tag:prod r<=8")
    with page.expect_navigation() as nav:
        page.click("#search")
    print("query page:", timing(nav.value))
    assert page.locator("#adapters tbody tr").count() == 50
    assert all(int(r) <= 8 for r in column(page, "#adapters", ".r"))
    for tags in page.locator("#adapters tbody tr td:nth-child(10)").all_inner_texts():
        assert "prod" in tags.split()
    snap(page, shots, "04-catalog-query")

    page.click("th a[data-col=params]")
    page.wait_for_url(re.compile(r"sort=params"))
    first = numbers(column(page, "#adapters", ".params"))
    assert first == sorted(first)
    page.click("th a[data-col=params]")  # again: descending
    page.wait_for_url(re.compile(r"sort=-params"))
    down = numbers(column(page, "#adapters", ".params"))
    assert down == sorted(down, reverse=True) and down[0] > first[0]
    snap(page, shots, "05-catalog-sorted")

    ids_one = page.locator("#adapters a.adapter").evaluate_all("a => a.map(x => x.href)")
    with page.expect_navigation() as nav:
        page.click("#next")
    print("second page:", timing(nav.value))
    assert "after=" in page.url and "OFFSET" not in page.url.upper()
    ids_two = page.locator("#adapters a.adapter").evaluate_all("a => a.map(x => x.href)")
    assert not set(ids_one) & set(ids_two)
    after = numbers(column(page, "#adapters", ".params"))
    assert after == sorted(after, reverse=True) and after[0] <= down[-1]
    assert all(int(r) <= 8 for r in column(page, "#adapters", ".r"))  # the query travels along
    snap(page, shots, "06-catalog-page-2")
    page.click("#prev")
    page.wait_for_url(re.compile(r"before="))
    assert page.locator("#adapters a.adapter").evaluate_all("a => a.map(x => x.href)") == ids_one
    assert page.locator("#prev").count() == 0  # back on the first page

    page.fill("#q", "r<=")
    page.click("#search")
    assert "missing value after r<=" in page.inner_text("#error")
    assert page.input_value("#q") == "r<="  # kept for editing
    snap(page, shots, "07-catalog-bad-query")


def test_adapter_page_shows_everything_and_downloads_verified_bytes(page, zoo_server, shots):
    facts = zoo_server.facts
    sign_in(page, zoo_server, next_path="/adapters?q=name%3Dsentiment")
    page.click(f"a[href='/adapters/{facts.alias_moves[-1]}']")
    page.wait_for_url(f"**/adapters/{facts.alias_moves[-1]}")
    config = page.inner_text("#config")
    # sentiment@prod points at the third real adapter: CONFIGS[2], plain LoRA r=8 (u=8, m=n=1)
    assert re.search(r"^r\s+8$", config, re.M) and re.search(r"sharing m/n \(A/B\)\s+1 / 1", config)
    assert page.locator("#targets tbody tr").count() == 8
    assert "q_proj" in page.inner_text("#targets")
    assert page.inner_text("#pull") == f"zoo pull {facts.alias_moves[-1]} -o adapters/"
    metrics = page.inner_text("#metrics")
    assert "sst2-dev.jsonl@" in metrics and "imdb-test.jsonl@" in metrics and "accuracy" in metrics
    history = page.locator("#aliases table.history tbody tr")
    assert history.count() == len(facts.alias_moves)  # set, moved, moved again
    assert "moved" in history.first.inner_text() and "local:" in history.first.inner_text()
    assert "team=nlp" in page.inner_text("#tags")
    snap(page, shots, "08-adapter")

    page.goto(f"/jobs/{facts.jobs['succeeded']}")
    page.click("#adapter")
    page.wait_for_url(f"**/adapters/{facts.real['trained']}")
    assert page.locator("#job").inner_text() == facts.jobs["succeeded"]
    assert "train" in page.inner_text("#lineage")
    with page.expect_download() as download:
        page.click("#download")
    data = Path(download.value.path()).read_bytes()
    digest = page.inner_text("#config").split("sha256")[1].split()[0]
    assert hashlib.sha256(data).hexdigest() == digest
    snap(page, shots, "09-adapter-trained")


def test_leaderboard_pickers_and_picture(page, zoo_server, shots):
    facts = zoo_server.facts
    sign_in(page, zoo_server, next_path="/leaderboard")
    options = page.locator("#dataset option").all_inner_texts()
    assert sorted(o.split("@")[0] for o in options) == ["imdb-test.jsonl", "sst2-dev.jsonl"]
    assert page.locator("#metric option:checked").inner_text() == "accuracy"
    rows = page.locator("#board tbody tr")
    assert rows.count() == 12  # the twelve evaluated adapters
    values = [float(v) for v in column(page, "#board", ".value")]
    assert values == sorted(values, reverse=True)
    svg = page.locator("#picture svg")
    assert svg.locator("circle.point").count() == rows.count()
    assert svg.locator("polyline.front").count() == 1
    assert "accuracy vs trainable parameters" in svg.locator("title").first.text_content()
    snap(page, shots, "10-leaderboard")

    assert page.locator("#dataset option:checked").inner_text().startswith("imdb-test.jsonl@")
    sst2 = next(o for o in options if o.startswith("sst2"))
    with page.expect_navigation():
        page.select_option("#dataset", label=sst2)  # the script submits on change
    assert "dataset=" + facts.datasets["sst2-dev.jsonl"] in page.url
    moved = [float(v) for v in column(page, "#board", ".value")]
    assert [round(v - 0.1, 4) for v in moved] == values  # sst2 scores are imdb's + 0.1
    with page.expect_navigation():
        page.select_option("#metric", "loss")
    losses = [float(v) for v in column(page, "#board", ".value")]
    assert losses == sorted(losses)  # lower is better for loss
    assert "lower is better" in page.inner_text("#summary")
    assert "loss vs trainable parameters" in svg.locator("title").first.text_content()
    snap(page, shots, "11-leaderboard-loss")

    page.fill("input[name=q]", "r<=4")  # only the adapters of rank 4 or less
    with page.expect_navigation():
        page.click("#show")
    assert page.locator("#board tbody tr").count() == 4
    assert svg.locator("circle.point").count() == 4
    page.fill("input[name=q]", "r<<4")
    with page.expect_navigation():
        page.click("#show")
    assert "bad term" in page.inner_text("#message")
    assert page.input_value("input[name=q]") == "r<<4"


def test_jobs_pages_show_states_attempts_and_logs(page, zoo_server, shots):
    jobs = zoo_server.facts.jobs
    sign_in(page, zoo_server, next_path="/jobs")
    states = page.inner_text("#states")
    for state in ("SUCCEEDED (1)", "FAILED (1)", "RUNNING (1)", "PENDING (1)"):
        assert state in states
    assert page.locator("#jobs tbody tr").count() == 4
    snap(page, shots, "12-jobs")

    page.click("#states a.failed")
    page.wait_for_url("**state=FAILED")
    assert page.locator("#jobs tbody tr").count() == 1
    assert "CUDA out of memory" in page.inner_text("#jobs")

    page.goto(f"/jobs/{jobs['succeeded']}")
    assert page.inner_text("#state") == "SUCCEEDED"
    assert page.inner_text("#attempts") == "1 of at most 3"
    assert "published" in page.inner_text("#log")  # the final log, kept in the job's row
    snap(page, shots, "13-job-succeeded")
    page.goto(f"/jobs/{jobs['running']}")
    assert "(running)" in page.inner_text("#log")  # the latest log shipped to the store
    snap(page, shots, "14-job-running")


def test_forged_forms_are_refused(page, browser, zoo_server, shots):
    sign_in(page, zoo_server)
    # A form posted with the session cookie but without the page's CSRF token: refused.
    answer = page.request.post(f"{zoo_server.url}/logout", form={"csrf": "forged"})
    assert answer.status == 403 and "CSRF" in answer.text()
    # A sign-in form that did not come from our page (no matching CSRF cookie): refused.
    answer = page.request.post(f"{zoo_server.url}/login",
                               form={"token": zoo_server.secrets["alice"], "csrf": "x"})
    assert answer.status == 403
    # Another site's auto-submitting form: the Lax cookie is not sent, nothing happens.
    evil = browser.new_page()
    evil.set_content(f'<form id="f" method="post" action="{zoo_server.url}/logout">'
                     '<input name="csrf" value="guess"></form>'
                     "<script>document.getElementById('f').submit()</script>")
    evil.wait_for_load_state()
    evil.close()
    page.goto("/adapters")
    assert page.inner_text("#who") == "alice"  # still signed in
    page.goto("/adapters/no-such-adapter")
    assert "no adapter" in page.inner_text("#error")
    snap(page, shots, "15-not-found")
