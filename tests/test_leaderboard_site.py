"""The built site: well-formed pages, links that resolve, escaped submitter text, table order."""

from __future__ import annotations

import csv
import re
import statistics
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from mqarbench.errors import UserError
from mqarbench.leaderboard.build import build_site
from mqarbench.results.store import read_results
from test_leaderboard_fixtures import catalog, write_runs, write_submission  # noqa: F401

EVIL = "<script>alert(1)</script>"
VOID = {"meta", "link", "br", "img", "input", "hr", "rect", "source", "wbr"}


@pytest.fixture(scope="module")
def built(tmp_path_factory, catalog):
    base = tmp_path_factory.mktemp("site")
    subs = base / "submissions"
    write_submission(subs, "mamba-full", catalog, "Mamba", suites=("main", "positional", "ngram", "robustness"),
                     attention=True)
    write_submission(subs, "global-mamba", catalog, "Global Mamba", offset=20)
    write_submission(subs, "evil", catalog, EVIL, offset=10, seed=7, meta={
        "authors": EVIL, "adapter_source": EVIL, "notes": EVIL,
        "link": 'https://example.org/"><script>alert(1)</script>'})
    runs = base / "runs"
    for seed in (0, 1, 2):
        write_runs(runs, catalog, "pythia", ("main",), seed=seed, offset=45, family="attention")
    write_runs(runs, catalog, EVIL + "-local", ("positional",), offset=5)
    index = build_site([subs, runs], base / "site", catalog=catalog)
    return index, [subs, runs]


class _Checker(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.refs, self.ids = [], [], [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for key in ("href", "src"):
            if attrs.get(key):
                self.refs.append(attrs[key])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


def _parse(path: Path) -> _Checker:
    checker = _Checker()
    checker.feed(path.read_text())
    checker.close()
    return checker


def test_every_page_is_well_formed_and_every_link_resolves(built):
    index, _ = built
    site = index.parent
    pages = sorted(site.rglob("*.html"))
    assert {"index.html", "models/mamba-full.html", "tasks/k2v2.html"} <= {
        p.relative_to(site).as_posix() for p in pages}
    parsed = {p: _parse(p) for p in pages}
    for page, checker in parsed.items():
        assert checker.errors == [] and checker.stack == [], (page, checker.errors, checker.stack)
        for ref in checker.refs:
            parts = urlsplit(ref)
            if parts.scheme in ("http", "https"):
                continue
            assert parts.scheme == "", (page, ref)  # no javascript:, no CDN, nothing else
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            assert target.is_file() and site.resolve() in target.parents, (page, ref)
            if parts.fragment and target.suffix == ".html":
                assert parts.fragment in parsed[target].ids, (page, ref)


def test_submitter_text_is_escaped_everywhere(built):
    index, _ = built
    site = index.parent
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert "<script>alert" not in text, page
        assert not re.search(r"<script(?![^>]*\bsrc=\"(\.\./)?static/leaderboard\.js\")", text), page
    html = index.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the names show as text, in the table and SVGs
    evil_page = (site / "models" / "evil.html").read_text()
    assert evil_page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4  # name, authors, adapter, notes
    assert 'href="https://example.org/&#34;&gt;&lt;script&gt;' in evil_page
    assert (site / "models" / "script-alert-1-script-local.html").is_file()  # a model name becomes a safe file name


class _TableReader(HTMLParser):
    """Header texts and (data-value, text) cells of the first leaderboard table."""

    def __init__(self):
        super().__init__()
        self.headers, self.rows, self.cell, self.state = [], [], None, "before"
        self.names, self.in_link = [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and self.state == "before" and "leaderboard" in attrs.get("class", ""):
            self.state = "in"
        elif self.state == "in" and tag in ("th", "td"):
            self.cell = [attrs.get("data-value"), ""]
        elif self.state == "in" and tag == "tr":
            self.rows.append([])
        elif self.state == "in" and tag == "a":
            self.in_link = True
            self.names.append("")

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[1] += " " + data
        if self.in_link:
            self.names[-1] += data

    def handle_endtag(self, tag):
        self.in_link = self.in_link and tag != "a"
        if self.state == "in" and tag in ("th", "td") and self.cell is not None:
            value, text = self.cell[0], " ".join(self.cell[1].split())
            (self.headers.append(text) if tag == "th" else self.rows[-1].append((value, text)))
            self.cell = None
        elif tag == "table" and self.state == "in":
            self.state = "done"


def _leader_table(index: Path):
    """(headers, model names, rows of (data-value, text) cells)."""
    reader = _TableReader()
    reader.feed(index.read_text())
    return reader.headers, reader.names, [r for r in reader.rows if r]


def _overall(sources, train, test) -> dict[str, list[float]]:
    scores: dict[str, list[float]] = {}
    for source in sources:
        for f in source.rglob("results.parquet"):
            for r in read_results(f).to_pylist():
                if r["slice"] == "overall" and (r["train_task"], r["test_task"]) == (train, test):
                    scores.setdefault(r["model"], []).append(r["query_accuracy"])
    return scores


def test_leaderboard_values_order_best_marks_and_not_run(built):
    index, sources = built
    headers, names, rows = _leader_table(index)
    assert headers == ["Model", "Params", "State", "Shuffle", "Std-Last", "Std-Shuffle", "K2V2",
                       "K2V2-Robustness", "K4V8-Shuffle", "Mean", "Shortcut"]
    assert set(names) == {"pythia", "Mamba", "Global Mamba", EVIL, EVIL + "-local"}
    expected = _overall(sources, "shuffle", "shuffle")
    col = headers.index("Shuffle")
    for name, row in zip(names, rows):
        assert float(row[col][0]) == pytest.approx(statistics.fmean(expected[name]), abs=1e-5)
    # Default order: the mean over the six columns, complete rows first; partial rows last.
    mean_col = headers.index("Mean")
    means = [float(r[mean_col][0]) for r in rows if r[mean_col][0]]
    assert means == sorted(means, reverse=True) and len(means) == 4
    partial = rows[-1]
    assert names[-1] == EVIL + "-local" and [c[1] for c in partial[col + 3:col + 6]] == ["not run"] * 3
    # Best per column is the maximum, and only it.
    html = index.read_text()
    assert html.count('title="best in column"') >= 6
    # Several seeds: mean ± std (n).
    pythia = rows[names.index("pythia")]
    values = expected["pythia"]
    assert f"± {statistics.stdev(values):.2f}" in pythia[col][1] and "(n=3)" in pythia[col][1]
    # Shortcut: the positional transfer ratio mean(Std-Last, Std-Shuffle) / Shuffle, then the
    # n-gram ratio (not run here: the fixture has no K1V1 training).
    transfers = [statistics.fmean(_overall(sources, "standard", t)["pythia"]) for t in ("last", "shuffle")]
    ratio = statistics.fmean(transfers) / statistics.fmean(values)
    shortcut = pythia[headers.index("Shortcut")]
    assert float(shortcut[0]) == pytest.approx(ratio, abs=1e-5) and shortcut[1] == f"{ratio:.2f} · –"


def test_sorting_by_data_values_gives_the_score_order(built):
    index, sources = built
    headers, names, rows = _leader_table(index)
    col = headers.index("Std-Last")
    run = [(float(r[col][0]), r[0][0]) for r in rows if r[col][0]]
    by_value = [name for _, name in sorted(run, reverse=True)]
    truth = _overall(sources, "standard", "last")
    by_truth = sorted(truth, key=lambda m: -statistics.fmean(truth[m]))
    assert by_value == [m.lower() for m in by_truth]


def test_downloads_hold_every_table(built):
    index, _ = built
    data = index.parent / "data"
    with open(data / "table3.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["column"] for r in rows} == {"Shuffle", "Std-Last", "Std-Shuffle", "K2V2", "K2V2-Robustness",
                                           "K4V8-Shuffle"}
    assert {r["entry"] for r in rows} >= {"mamba-full", "global-mamba", "evil", "pythia"}
    assert next(r for r in rows if r["entry"] == "pythia")["n"] == "3"
    for stem in ("table1", "table2", "fig6a", "cells", "results"):
        assert (data / f"{stem}.csv").stat().st_size > 100 and (data / f"{stem}.json").is_file()
    fig = list(csv.DictReader(open(data / "fig6a.csv")))
    assert [float(r["answer_share"]) for r in fig if r["train_task"] == "standard"] == [55.0, 25.0, 15.0, 5.0]


def test_attention_maps_are_png_images(built):
    index, _ = built
    pngs = sorted((index.parent / "models" / "mamba-full" / "attention").glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert int.from_bytes(pngs[0].read_bytes()[16:20], "big") == 64  # width = sequence length
    assert "layer 2" in (index.parent / "models" / "mamba-full.html").read_text()


def test_rebuild_replaces_the_site_but_never_a_foreign_directory(built, tmp_path, catalog):
    index, sources = built
    again = build_site(sources, index.parent, catalog=catalog)
    assert again == index and index.is_file()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="is not a leaderboard site"):
        build_site(sources, tmp_path, catalog=catalog)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_site_with_no_results_says_so(tmp_path, catalog):
    (tmp_path / "none").mkdir()
    index = build_site([tmp_path / "none"], tmp_path / "site", catalog=catalog)
    assert "No results yet" in index.read_text() and _parse(index).errors == []
    assert (index.parent / "tasks" / "shuffle.html").is_file()


def test_task_pages_show_every_models_scores_on_the_task(built):
    index, sources = built
    rows = [r for src in sources for f in src.rglob("results.parquet") for r in read_results(f).to_pylist()
            if r["slice"] == "overall" and r["test_task"] == "k2v2"]
    expected: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        expected.setdefault((r["model"], r["train_task"]), []).append(r["query_accuracy"])
    assert len({m for m, _ in expected}) == 4  # three submissions and the local pythia runs
    html = (index.parent / "tasks" / "k2v2.html").read_text()
    section = html.split("<h2>Scores</h2>")[1].split("<h2>Grid</h2>")[0]
    shown = re.findall(r'<tr data-family="([^"]+)"><td data-value="[^"]*"><a href="[^"]+">([^<]+)</a></td>'
                       r'<td>[^<]+</td><td>([^<]+)</td>\s*<td class="num" data-value="([0-9.]+)"', section)
    assert len(shown) == len(expected)
    import html as html_lib

    for family, name, train, value in shown:
        values = expected[(html_lib.unescape(name), train)]
        assert float(value) == pytest.approx(statistics.fmean(values), abs=1e-5)
        assert family == ("attention" if name == "pythia" else "ssm")
    assert [float(v) for *_, v in shown] == sorted((float(v) for *_, v in shown), reverse=True)
    assert "±" in section  # pythia ran three seeds


def test_board_has_a_family_filter_over_every_row_and_figure(built):
    index, _ = built
    html = index.read_text()
    options = re.findall(r'<option value="([^"]*)">', html.split('id="family-select"')[1].split("</select>")[0])
    assert options == ["", "attention", "ssm"]
    rows = re.findall(r'<tr data-family="([^"]+)">', html)
    assert rows and set(rows) == {"attention", "ssm"}
    assert html.count("<figure data-family=") == html.count("<figure")


def test_shortcut_cell_shows_the_hidden_attention_shares_of_runs_that_saved_maps(built):
    from mqarbench.leaderboard.shortcut import load_attention_shares

    index, (subs, _) = built
    html = index.read_text()
    maps = sorted((subs / "mamba-full" / "runs").glob("*/attention/last.npz"))
    assert maps, "the fixture saves a map of `last` for the run trained on standard"
    pair, first = load_attention_shares(maps[0])
    assert f"attn {100 * pair:.0f}% pair · {100 * first:.0f}% first" in html
    assert html.count('class="attention-share"') == 1  # only the model whose runs saved maps
