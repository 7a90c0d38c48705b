"""`mqarbench leaderboard submit` and `build` from the command line."""

from __future__ import annotations

import yaml

from mqarbench.cli import main
from test_leaderboard_fixtures import catalog, write_runs  # noqa: F401


def _submit(results, root, catalog, name="mamba-tiny", *extra):
    return main(["leaderboard", "submit", "--results", str(results), "--name", name,
                 "--model-name", "Mamba (ours)", "--authors", "A. Author", "--link", "https://example.org",
                 "--adapter-source", "https://example.org/adapter.py", "--root", str(root),
                 "--data-dir", str(catalog.data_dir), *extra])


def test_submit_copies_runs_writes_metadata_validates_and_never_overwrites(tmp_path, catalog, capsys):
    out = write_runs(tmp_path / "out", catalog, "mamba", ("main",), attention=True)
    (out / "runs" / next((out / "runs").iterdir()).name / "checkpoint.pt").write_bytes(b"x" * 100)
    root = tmp_path / "submissions"
    assert _submit(out, root, catalog) == 0
    assert "valid" in capsys.readouterr().out
    sub = root / "mamba-tiny"
    meta = yaml.safe_load((sub / "metadata.yaml").read_text())
    assert meta["model_name"] == "Mamba (ours)" and meta["preset"] == "tiny" and meta["suites"] == ["main"]
    copied = sorted(p.relative_to(sub).as_posix() for p in sub.rglob("*") if p.is_file())
    assert len([p for p in copied if p.endswith("results.parquet")]) == len(list((out / "runs").iterdir())) == 4
    assert any(p.endswith(".npz") for p in copied) and not any(p.endswith(".pt") for p in copied)

    before = (sub / "metadata.yaml").read_text()
    assert _submit(out, root, catalog) == 2
    assert "already exists" in capsys.readouterr().err
    assert (sub / "metadata.yaml").read_text() == before

    # The same results under a second name are a duplicate.
    assert _submit(out, root, catalog, "again") == 1
    assert "already in submission 'mamba-tiny'" in capsys.readouterr().out


def test_submit_leaves_out_the_local_site(tmp_path, catalog):
    from mqarbench.leaderboard.build import build_site

    out = write_runs(tmp_path / "out", catalog, "mamba", ("main",))
    build_site([out], out / "site", catalog=catalog)  # as `mqarbench run` does: <out>/site
    assert list((out / "site").rglob("results.parquet"))  # the site holds copies of the results
    root = tmp_path / "submissions"
    assert _submit(out, root, catalog) == 0
    copied = [p.relative_to(root / "mamba-tiny").as_posix() for p in (root / "mamba-tiny").rglob("*") if p.is_file()]
    assert not any("site" in p for p in copied), copied
    assert len([p for p in copied if p.endswith("results.parquet")]) == 4


def test_submit_reports_an_incomplete_claim_and_bad_flags(tmp_path, catalog, capsys):
    out = write_runs(tmp_path / "out", catalog, "mamba", ("positional",))
    root = tmp_path / "submissions"
    assert _submit(out, root, catalog, "partial", "--suite", "main") == 1
    assert "suite 'main' lacks experiments K2V2 (k2v2 -> k2v2)" in capsys.readouterr().out
    assert _submit(out, root, catalog, "Bad Name!") == 2
    assert "--name" in capsys.readouterr().err
    assert main(["leaderboard", "submit", "--results", str(out), "--name", "x", "--model-name", "m",
                 "--authors", "a", "--link", "ftp://x", "--adapter-source", "s", "--root", str(root),
                 "--data-dir", str(catalog.data_dir)]) == 2
    assert "--link: Value error, must start with https://" in capsys.readouterr().err


def test_build_command_prints_the_site(tmp_path, catalog, capsys):
    out = write_runs(tmp_path / "out", catalog, "mamba", ("main",))
    assert main(["leaderboard", "build", "--source", str(out), "--out", str(tmp_path / "site"),
                 "--data-dir", str(catalog.data_dir)]) == 0
    assert f"leaderboard site: {tmp_path / 'site' / 'index.html'}" in capsys.readouterr().out
    assert main(["leaderboard", "build", "--source", str(tmp_path / "missing"), "--out",
                 str(tmp_path / "s2"), "--data-dir", str(catalog.data_dir)]) == 2
    assert "does not exist" in capsys.readouterr().err
