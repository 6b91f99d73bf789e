"""Bad input, every command: exit code 2, one line on stderr naming what is wrong, nothing written.

The cases live in tests/data/bad_inputs.yaml. A hypothesis test throws random values and random
YAML at the config loader: it loads, or fails with one ConfigError line, nothing else.
"""

import base64
import sqlite3
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsemem.cli import main
from sparsemem.config import ConfigError, RunConfig, load_yaml
from sparsemem.sweep.store import Store

CASES = yaml.safe_load((Path(__file__).parent / "data" / "bad_inputs.yaml").read_text())


def _make(path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind in ("valid_store", "truncated_store"):
        with Store(path) as store:
            cfg = RunConfig.from_dict({}, ["train.steps=2"])
            store.add("s", [(f"{i:064x}", f"r{i}", {**cfg.to_dict(), "pad": "x" * 400}) for i in range(300)])
        if kind == "truncated_store":
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 3])
    elif kind == "foreign_store":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE other (a INTEGER)")
        db.commit()
        db.close()
    else:
        raise ValueError(kind)


def _snapshot(root: Path) -> dict:
    return {
        str(p.relative_to(root)): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def _case_id(case: dict) -> str:
    return " ".join(str(a) for a in case["argv"])[:80]


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPARSEMEM_MEMORY_LIMIT", "64G")  # the same limit on every machine
    for name, content in (case.get("files") or {}).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for name, kind in (case.get("make") or {}).items():
        _make(tmp_path / name, kind)
    before = _snapshot(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in case["argv"]]
    if argv[0] in ("train", "sweep", "reproduce"):
        argv.append("--no-progress")
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        rc = exc.code
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("sparsemem") and case["expect"] in lines[0], lines[0]
    assert _snapshot(tmp_path) == before, "something was written"


def test_the_corpus_is_large_and_covers_every_command():
    commands = {c["argv"][0] for c in CASES}
    assert len(CASES) >= 60 and commands >= {"train", "sweep", "reproduce", "report"}


def test_the_default_config_is_valid():
    """So an error always names the field the user gave, never a default."""
    cfg = RunConfig()
    assert cfg.task.kind == "fixed" and cfg.task.lags
    with pytest.raises(ConfigError, match=r"^model\.heads = 0"):
        RunConfig.from_dict({}, ["model.heads=0"])


def test_repeated_keys_name_the_key_and_lines(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  steps: 20\n  batch_size: 8\nmodel: {heads: 2}\ntrain:\n  steps: 1000\n")
    with pytest.raises(ConfigError, match=r"line 5: key 'train' appears twice \(lines 1 and 5\)"):
        load_yaml(path)


FIELDS = [
    "task.seq_len",
    "task.dim",
    "task.lags",
    "task.kind",
    "task.kernels",
    "task.input",
    "task.readout",
    "task.seed",
    "model.heads",
    "model.dim",
    "model.layers",
    "model.rpe",
    "model.rpe_init",
    "model.attention",
    "model.normalize",
    "model.ffn_width",
    "train.lr",
    "train.betas",
    "train.seed",
    "train.steps",
    "train.device",
    "train.dtype",
    "train.blowup",
    "nonsense",
    "model.x.y",
]
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(FIELDS), VALUES), max_size=4))
def test_random_values_load_or_fail_with_one_line(items):
    overrides = [
        f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
        for key, value in items
    ]
    try:
        cfg = RunConfig.from_dict({}, overrides)
    except ConfigError as err:
        assert "\n" not in str(err) and str(err)
    else:
        assert RunConfig.model_validate(cfg.to_dict()) == cfg  # what loads round-trips


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()))
def test_random_yaml_text_loads_or_fails_with_one_line(text):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(text)
        try:
            RunConfig.from_yaml(path)
        except ConfigError as err:
            assert "\n" not in str(err) and str(err)
