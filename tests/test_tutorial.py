"""docs/tutorial.md cannot rot: its python blocks run, in order, as one script."""

import re
import tempfile
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[str]:
    return BLOCK.findall(TUTORIAL.read_text())


def test_tutorial_has_blocks():
    assert len(python_blocks()) >= 6


def test_tutorial_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # mkdtemp lands in tmp_path
    namespace: dict = {"__name__": "__tutorial__"}
    code = compile("\n".join(python_blocks()), str(TUTORIAL), "exec")
    exec(code, namespace)  # noqa: S102 - the documentation's own code
    work = namespace["work"]
    assert (work / "effects.json").is_file()
    assert (work / "sensitivity.json").is_file()
    assert {p.name for p in (work / "figures").iterdir()} >= {
        "arm_distributions.png",
        "quantile_effects.png",
    }
    result = namespace["result"]
    assert set(result.table.effect) >= {"TE", "NIE_treated", "NDE_control"}
    assert namespace["diagnostics"]["nodes"].keys() == {"M", "Y"}
    assert "NIE_treated" in capsys.readouterr().out
