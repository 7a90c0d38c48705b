"""benchmarks/triton_cache_prune.py's answer to a folder that is no Triton cache."""

import pytest
from bench_scripts import load_script


@pytest.mark.parametrize("make", ["missing", "file"])
def test_a_cache_folder_that_is_not_there_is_one_line_naming_it(tmp_path, capsys, make):
    prune = load_script("triton_cache_prune")
    cache = tmp_path / ".triton"
    if make == "file":
        cache.write_text("")
    with pytest.raises(SystemExit) as exit_:
        prune.main([str(cache), "--dry-run"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err == f"triton_cache_prune.py: no Triton cache at {cache}: pass the folder TRITON_CACHE_DIR pointed at\n"


def test_an_empty_cache_folder_is_no_error(tmp_path, capsys):
    prune = load_script("triton_cache_prune")
    (tmp_path / ".triton").mkdir()
    assert prune.main([str(tmp_path / ".triton"), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("0 of 0 cache entries")
