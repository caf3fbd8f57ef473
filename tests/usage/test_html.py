"""The HTML usage report: a self-contained document (no script, stylesheet, font or image fetched
from anywhere) with its three SVG charts; the fragment for the web console is the same body; every
value from the warehouse is escaped."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser

from tests.helpers.configs import write_config
from tests.helpers.usage import commit, event
from tests.usage.test_report import NOW, T0, month
from usagewatch import config
from usagewatch.store import Store
from usagewatch.usage.html import render, render_fragment
from usagewatch.usage.report import build


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def report(tmp_path, extra=()):
    cfg = config.load(write_config(tmp_path, [], usage={"cost": {"per_second": 0.01}}))
    store = Store(cfg.database)
    commit(store, [*month(), *extra])
    try:
        return build(store, cfg, timedelta(days=28), NOW)
    finally:
        store.close()


def test_a_self_contained_document_with_three_charts(tmp_path):
    html = render(report(tmp_path))
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    for external in ('src="http', "src='http", "<link", "<script", "@import", "url(", "href=\"http"):
        assert external not in html
    parser = Tags()
    parser.feed(html)
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "img" not in tags and "iframe" not in tags
    labels = [a.get("aria-label") or "" for t, a in parser.tags if t == "svg"]
    assert [lbl.split(":")[0] for lbl in labels] == ["Usage over time", "Pareto curve", "Users per segment"]
    assert "33% of users (2 of 6) account for 99% of the estimated cost." in html
    assert html.count("<rect") > 28  # a bar per day, and the segment bars
    assert re.search(r"<polyline points=\"[\d., ]+\"", html)  # the Pareto curve


def test_the_fragment_is_the_body_without_a_document(tmp_path):
    r = report(tmp_path)
    fragment = render_fragment(r)
    assert fragment.startswith('<section class="uw-usage">') and "<html" not in fragment and "<head" not in fragment
    assert fragment in render(r)


def test_values_from_the_warehouse_are_escaped(tmp_path):
    evil = event("<script>alert(1)</script>", T0 + timedelta(days=27), ms=5, fingerprint="fp-<b>",
                 tables=('"><img src=x>',))
    html = render(report(tmp_path, [evil]))
    assert "<script>" not in html and "<img" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
