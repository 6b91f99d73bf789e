"""The file system refusing a run, as a user meets it: a full disk mid-run, a read-only folder holding a
finished run. One line, exit 2, nothing half-written; a finished run is still served."""

import errno
import json
import pathlib
import tempfile

import pytest

from sparsemem.cli import main

ARGS = ["train.steps=4", "train.eval_every=2", "train.batch_size=4", "--no-progress"]


def _files(root: pathlib.Path) -> dict:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()
    }


def _fill_disk_on(monkeypatch, name: str) -> None:
    """Writes of ``name``'s temporary put half their bytes on disk, then fail as a full disk does (the
    error carries no file name, like a failing write() after a successful open())."""
    real_bytes, real_text = pathlib.Path.write_bytes, pathlib.Path.write_text

    def full(self, data, *a, **kw):
        if self.name == name + ".tmp":
            (real_bytes if isinstance(data, bytes) else real_text)(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return (real_bytes if isinstance(data, bytes) else real_text)(self, data, *a, **kw)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    monkeypatch.setattr(pathlib.Path, "write_text", full)


@pytest.mark.parametrize("name", ["config.yaml", "checkpoint.pt", "final.json"])
def test_a_full_disk_is_one_line_leaves_no_temporary_and_the_run_goes_on_after(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _fill_disk_on(m, name)
        rc = main(["train", "--out", str(out), *ARGS])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{out / name}: No space left on device" in err and "free space" in err, err
    assert not list(tmp_path.rglob("*.tmp")), "a half-written temporary stayed"
    assert not (out / "final.json").exists() or name != "final.json"
    assert main(["train", "--out", str(out), *ARGS]) == 0  # the disk has room again: the run finishes
    final = json.loads((out / "final.json").read_text())
    assert final["status"] == "done" and final["steps"] == 4


def test_a_full_disk_while_appending_metrics_names_the_file(tmp_path, monkeypatch, capsys):
    import builtins

    real_open = builtins.open

    def full_open(file, mode="r", *a, **kw):
        if str(file).endswith("metrics.jsonl") and "a" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(file, mode, *a, **kw)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(builtins, "open", full_open)
    rc = main(["train", "--out", str(tmp_path / "run"), *ARGS])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "metrics.jsonl: No space left on device" in err, err


def _read_only(monkeypatch) -> None:
    """Every new file fails as on a read-only mount (we run as root in CI, where chmod does not stop writes)."""

    def refuse(*a, **kw):
        raise OSError(errno.EROFS, "Read-only file system")

    real_open = open

    def open_ro(file, mode="r", *a, **kw):
        if any(c in mode for c in "wax+"):
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return real_open(file, mode, *a, **kw)

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    monkeypatch.setattr("builtins.open", open_ro)


def test_a_finished_run_is_served_from_a_read_only_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *ARGS, "--json"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[-1])
    before = _files(out)
    with monkeypatch.context() as m:
        _read_only(m)
        rc = main(["train", "--out", str(out), *ARGS, "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    again = json.loads(captured.out.splitlines()[-1])
    assert again["val_loss"] == first["val_loss"] and again["config_hash"] == first["config_hash"]
    assert _files(out) == before, "a finished run was rewritten"


def test_an_unfinished_run_in_a_read_only_folder_is_refused_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *ARGS]) == 0
    capsys.readouterr()
    before = _files(out)
    with monkeypatch.context() as m:
        _read_only(m)
        rc = main(["train", "--out", str(out), *ARGS[:-1], "train.steps=6", "--no-progress"])  # another run
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "cannot be written" in err, err
    assert _files(out) == before
