"""The README's Python example runs as written (from a scratch folder: packaged examples are found by name)."""

import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = [b for b in readme_python_blocks() if "sm.train(" in b]
    assert blocks, "the README lost its Python example"
    monkeypatch.chdir(tmp_path)
    code = blocks[0]  # packaged examples are found by name from any folder
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README
    result, cfg = scope["result"], scope["cfg"]
    assert result["status"] == "done" and result["steps"] == cfg.train.steps
    assert "model" not in result and result.model is not None  # metrics apart from the trained model
    kernels = result.model.attention_kernels(16)
    assert len(kernels) == cfg.model.layers and kernels[0].shape == (cfg.model.heads, 16)
    assert np.allclose(kernels[0].sum(-1), 1.0)  # DP-free softmax heads: weights over lags sum to one
    assert (tmp_path / "runs" / "demo" / "final.json").exists()


def test_the_docs_home_page_is_the_readme():
    """docs/index.md is the README with its docs/ links made relative to the site (make docs builds it)."""
    readme = (ROOT / "README.md").read_text().replace("](docs/", "](")
    readme = readme.replace(
        "The pages under `docs/` (`make docs` builds them into `site/`):",
        "The pages of this site (`make docs` builds them into `site/`):",
    )
    assert (ROOT / "docs" / "index.md").read_text() == readme
