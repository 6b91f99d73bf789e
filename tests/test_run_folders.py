"""One default run-folder name: `sparsemem train` and a sweep into the same runs folder use the same
folder for a config, so either resumes the other's run; a folder an earlier version named is resumed."""

import json

from sparsemem.cli import main
from sparsemem.config import RunConfig
from sparsemem.sweep import Store, run_sweep

ARGS = ["train.steps=4", "train.eval_every=2", "train.batch_size=4"]


def test_train_and_a_sweep_share_a_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = RunConfig.from_dict({}, ARGS)
    with Store(tmp_path / "results.db") as store:  # a sweep whose runs folder is ./runs
        run_sweep([cfg], store, "s", progress=False)
    folder = tmp_path / "runs" / cfg.folder_name()
    assert json.loads((folder / "final.json").read_text())["config_hash"] == cfg.config_hash()
    before = (folder / "final.json").stat().st_mtime_ns
    assert main(["train", *ARGS, "--no-progress", "--json"]) == 0  # served from the sweep's folder
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["out_dir"] == str((tmp_path / "runs" / cfg.folder_name()).relative_to(tmp_path))
    assert (folder / "final.json").stat().st_mtime_ns == before
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [cfg.folder_name()]


def test_a_folder_named_by_an_earlier_version_is_resumed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = RunConfig.from_dict({}, ARGS)
    older = tmp_path / "runs" / f"{cfg.task.kind}-{cfg.config_hash()[:10]}"
    assert main(["train", *ARGS, "--out", str(older), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", *ARGS, "--no-progress", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["out_dir"] == str(older.relative_to(tmp_path))
    assert not (tmp_path / "runs" / cfg.folder_name()).exists()
