"""Trackers: train.log streams every evaluation to TensorBoard event files and offline W&B runs; the tests
read back what was written."""

import json
from pathlib import Path

import pytest

import sparsemem as sm
from sparsemem.cli import main

SMALL = [
    "task.lags=[2,5]",
    "task.seq_len=16",
    "model.dim=8",
    "model.ffn_width=8",
    "train.batch_size=8",
    "train.val_samples=32",
    "train.steps=12",
    "train.eval_every=4",
]


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for key, sub in (("WANDB_CONFIG_DIR", "cfg"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
        monkeypatch.setenv(key, str(tmp_path / "wandb-home" / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "sparsemem-tests")


def metrics_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def wandb_records(folder: Path) -> list:
    """The records of the offline W&B run under ``folder``: its .wandb file is a LevelDB-style log (a 7-byte
    header, then 32 KiB blocks of chunks: crc 4 bytes, length 2, type 1 full / 2 first / 3 middle / 4 last)
    of protobuf Records."""
    from wandb.proto import wandb_internal_pb2

    (path,) = folder.glob("wandb/offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, out, buf = 7, 32768, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buf)
            out.append(record)
    return out


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def wandb_run(folder: Path) -> dict:
    history, summary, run = {}, {}, None
    for r in wandb_records(folder):
        kind = r.WhichOneof("record_type")
        if kind == "history":
            items = {_key(i): json.loads(i.value_json) for i in r.history.item}
            history[items["_step"]] = items
        elif kind == "summary":
            summary.update({_key(i): json.loads(i.value_json) for i in r.summary.update})
        elif kind == "run":
            run = r.run
    config = {_key(i): json.loads(i.value_json) for i in run.config.update}
    return {
        "id": run.run_id,
        "name": run.display_name,
        "project": run.project,
        "config": config,
        "history": history,
        "summary": summary,
    }


def test_a_run_streams_every_evaluation_to_tensorboard_and_offline_wandb(tmp_path, offline_wandb):
    cfg = sm.RunConfig.from_dict({"name": "tracked"}, [*SMALL, "train.log=[tensorboard, wandb]"])
    result = sm.train(cfg, out_dir=tmp_path / "run", progress=False)
    rows = metrics_of(tmp_path / "run")
    assert [r["step"] for r in rows] == [4, 8, 12]

    tb = tensorboard_scalars(tmp_path / "run")
    assert set(tb) == {"train_loss", "val_loss", "val_rel", "lr"}
    for key in tb:
        assert [s for s, _ in tb[key]] == [4, 8, 12]
        assert [v for _, v in tb[key]] == pytest.approx([r[key] for r in rows], rel=1e-6)  # float32 events

    wb = wandb_run(tmp_path / "run")
    assert wb["id"] == cfg.config_hash()[:16] and wb["name"] == "tracked" and wb["project"] == "sparsemem-tests"
    assert wb["config"]["model"]["dim"] == 8 and wb["config"]["task"]["lags"] == [2, 5]
    assert sorted(wb["history"]) == [4, 8, 12]
    for r in rows:
        assert wb["history"][r["step"]]["val_loss"] == r["val_loss"]
        assert wb["history"][r["step"]]["lr"] == r["lr"]
    assert wb["summary"]["status"] == "done" and wb["summary"]["val_loss"] == result["val_loss"]


def test_every_fleet_member_streams_its_own_numbers(tmp_path):
    pytest.importorskip("tensorboard")
    cfgs = [sm.RunConfig.from_dict({}, [*SMALL, f"train.seed={s}", "train.log=[tensorboard]"]) for s in (0, 1)]
    results = sm.train_fleet(cfgs, out_dirs=[tmp_path / "a", tmp_path / "b"], fleet_dir=tmp_path / "f", progress=False)
    vals = []
    for folder, result in zip((tmp_path / "a", tmp_path / "b"), results):
        tb = tensorboard_scalars(folder)
        assert tb["val_loss"] == [(r["step"], pytest.approx(r["val_loss"], rel=1e-6)) for r in metrics_of(folder)]
        assert tb["val_loss"][-1][1] == pytest.approx(result["val_loss"], rel=1e-6)
        vals.append(tb["val_loss"][-1][1])
    assert vals[0] != vals[1]


def test_a_resumed_run_keeps_one_event_per_step(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from sparsemem.tasks.base import Task

    cfg = sm.RunConfig.from_dict({}, [*SMALL, "train.log=[tensorboard]", "train.steps=16", "train.checkpoint_every=8"])
    original, calls = Task.sample, {"n": 0}

    def interrupted(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 15:  # after the evaluation at 12, past the checkpoint at 8
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(Task, "sample", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sm.train(cfg, out_dir=tmp_path / "run", progress=False)
    monkeypatch.setattr(Task, "sample", original)
    sm.train(cfg, out_dir=tmp_path / "run", progress=False)
    assert [s for s, _ in tensorboard_scalars(tmp_path / "run")["val_loss"]] == [4, 8, 12, 16]
    assert tensorboard_scalars(tmp_path / "run")["val_loss"][2][1] == pytest.approx(
        metrics_of(tmp_path / "run")[2]["val_loss"], rel=1e-6
    )


def test_log_is_not_part_of_the_config_hash():
    plain = sm.RunConfig.from_dict({}, SMALL)
    assert sm.RunConfig.from_dict({}, [*SMALL, "train.log=[tensorboard]"]).config_hash() == plain.config_hash()


def test_a_missing_tracker_package_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    code = main(["train", *SMALL, "train.log=[wandb]", "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "train.log = wandb: needs the wandb package" in err and "sparsemem[wandb]" in err
    assert not (tmp_path / "run").exists()
