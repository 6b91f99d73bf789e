"""The import contract of `make lint` (tools/import_layers.py): downward imports only, no circles."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("import_layers", ROOT / "tools" / "import_layers.py")
import_layers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(import_layers)


def test_sparsemem_keeps_the_contract():
    assert import_layers.breaches(ROOT / "sparsemem") == []


def write(root: Path, files: dict) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_an_upward_import_a_sibling_import_and_a_circle_are_breaches(tmp_path):
    pkg = write(
        tmp_path,
        {
            "__init__.py": "",
            "top.py": "from . import low\n",
            "low/__init__.py": "",
            "low/a.py": "def f():\n    from ..top import x  # inside a function: counted too\n",
            "low/b.py": "from .c import y\n",
            "low/c.py": "from . import b\n",
            "side.py": "from .other import z\n",
            "other.py": "",
            "stray.py": "",
        },
    )
    found = import_layers.breaches(pkg, ["top", "side other", "low"])
    assert "pkg.low.a imports pkg.top: a higher layer" in found
    assert "pkg.side imports pkg.other: a sibling on its layer" in found
    assert "import circle: pkg.low.b -> pkg.low.c" in found
    assert "pkg.stray: not in any layer of the import contract (tools/import_layers.py LAYERS)" in found
    assert len(found) == 4  # top -> low is downward: allowed


def test_importing_a_deep_module_counts_its_package(tmp_path):
    pkg = write(
        tmp_path,
        {
            "__init__.py": "",
            "a/__init__.py": "from ..b.inner import x\n",
            "b/__init__.py": "from ..a import y\n",
            "b/inner.py": "",
        },
    )
    found = import_layers.breaches(pkg, ["a", "b"])
    assert "pkg.b imports pkg.a: a higher layer" in found
    assert any(line.startswith("import circle: pkg.a -> pkg.b") for line in found)


def test_docs_layout_names_every_module():
    text = (ROOT / "docs" / "layout.md").read_text()
    missing = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "sparsemem").rglob("*.py"))
        if p.name not in ("__init__.py", "__main__.py") and p.name not in text
    ]
    assert missing == []
    layered = " ".join(import_layers.LAYERS).split()
    assert all(f"`{unit}`" in text for unit in layered)  # the layers as the contract lists them


def test_no_file_cites_a_document_the_repository_lacks():
    """Code and docs cite only what the repository holds: not the planning notes outside it."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    bad = []
    for name in tracked:
        path = ROOT / name
        if path.suffix not in (".py", ".md", ".yaml", ".yml", ".toml", ".cfg", ".txt") or not path.is_file():
            continue
        text = path.read_text(errors="ignore")
        bad += [
            name
            for word in ("PAPER.md", "DESIGN.md", "../shared")
            if word in text and name != "tests/test_import_layers.py"
        ]
    assert sorted(set(bad)) == []
