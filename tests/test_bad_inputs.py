"""The bad-input corpora (issue 16): every case gives its exit code and one line, fast, never a traceback.

``tests/bad_inputs/<kind>/cases.yaml`` maps each case file of that folder to
``{args: [...], exit: N, message: "..."}``; in ``args``, ``{file}`` becomes the case file's path and
``{tmp}`` a fresh temporary folder. Each case runs in-process through ``edgekit.cli.main``. The message
must appear in the first line of stderr (or anywhere in stdout when stderr is empty, as for a gate that
fails with exit 1 and lists its checks). A case that exits 2 prints exactly one stderr line, starting
``edgekit: error: ``.
"""

import time
from pathlib import Path

import pytest
import yaml

from edgekit.cli import main

from conftest import REPO

CORPUS = REPO / "tests/bad_inputs"
KINDS = ("recipes", "devices", "reports", "paths")
#: "a few seconds" per case, imports excluded (``_warm_imports``)
SECONDS_PER_CASE = 5.0


def _cases():
    for kind in KINDS:
        cases_file = CORPUS / kind / "cases.yaml"
        if not cases_file.is_file():
            yield pytest.param(kind, None, {}, id=kind, marks=pytest.mark.skip(reason=f"no {cases_file.relative_to(REPO)}"))
            continue
        for name, case in yaml.safe_load(cases_file.read_text()).items():
            yield pytest.param(kind, name, case, id=f"{kind}/{name}")


@pytest.fixture(scope="module", autouse=True)
def _warm_imports():
    """Import what the commands import once, so that the time budget measures the case, not torch's import."""
    import edgekit.models  # noqa: F401  (torch)
    import edgekit.stages  # noqa: F401


def test_every_case_file_has_a_case():
    for kind in KINDS:
        folder = CORPUS / kind
        if not (folder / "cases.yaml").is_file():
            continue
        listed = set(yaml.safe_load((folder / "cases.yaml").read_text()))
        present = {path.name for path in folder.iterdir() if path.name != "cases.yaml"}
        assert present == listed, f"{kind}: files without a case {sorted(present - listed)}, cases without a file {sorted(listed - present)}"


def test_the_recipe_corpus_covers_issue_16():
    assert len(yaml.safe_load((CORPUS / "recipes/cases.yaml").read_text())) >= 15


@pytest.mark.parametrize("kind, name, case", list(_cases()))
def test_bad_input(kind, name, case, tmp_path, capsys, monkeypatch):
    case_file = CORPUS / kind / name
    assert case_file.exists(), f"{case_file} is listed in cases.yaml but missing"
    args = [arg.replace("{file}", str(case_file)).replace("{tmp}", str(tmp_path)) for arg in case["args"]]
    monkeypatch.chdir(REPO)  # relative paths inside the cases (devices/host.yaml ...) start at the repository
    started = time.monotonic()
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    seconds = time.monotonic() - started
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    assert code == case["exit"], f"exit {code}, expected {case['exit']}; stderr: {err[:500]}"
    assert err.count("\n") <= 1, f"stderr is not one line: {err[:500]!r}"
    if case["exit"] == 2:
        assert err.startswith("edgekit: error: ") and err.endswith("\n"), err[:500]
    said = err.splitlines()[0] if err.strip() else out
    assert case["message"] in said, f"{case['message']!r} not in {said[:500]!r}"
    assert seconds < SECONDS_PER_CASE, f"{kind}/{name} took {seconds:.1f} s"
