"""Names used but never defined, found without running the code: the GPU benchmark scripts run
only on a CUDA machine, so a stale name there would otherwise surface on the next device call."""

from __future__ import annotations

from pathlib import Path

import pytest

pyflakes_api = pytest.importorskip("pyflakes.api")
from pyflakes import messages  # noqa: E402
from pyflakes.reporter import Reporter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("mqarbench", "baselines", "benchmarks", "tests")


class _Collect(Reporter):
    def __init__(self) -> None:
        super().__init__(None, None)
        self.found: list[str] = []

    def flake(self, message) -> None:
        if isinstance(message, (messages.UndefinedName, messages.UndefinedLocal)):
            self.found.append(str(message))

    def syntaxError(self, filename, msg, lineno, offset, text) -> None:  # noqa: N802 - pyflakes' name
        self.found.append(f"{filename}:{lineno}: {msg}")

    def unexpectedError(self, filename, msg) -> None:  # noqa: N802
        self.found.append(f"{filename}: {msg}")


def test_no_file_uses_an_undefined_name():
    files = sorted(p for folder in CHECKED for p in (ROOT / folder).rglob("*.py"))
    assert len(files) > 50
    report = _Collect()
    for path in files:
        pyflakes_api.checkPath(str(path), report)
    assert report.found == []


def test_the_check_sees_an_undefined_name(tmp_path):
    """The check itself can fail: a script printing a name it never defined is reported."""
    script = tmp_path / "stale.py"
    script.write_text("def main():\n    rows = 3\n    print(f'{n} labels', rows)\n")
    report = _Collect()
    pyflakes_api.checkPath(str(script), report)
    assert len(report.found) == 1 and "undefined name 'n'" in report.found[0]
