"""The text corpus loader and byte language models, on a corpus the test writes."""

import subprocess
import sys

import pytest
import torch

import sparsemem as sm
from sparsemem.experiments import EXPERIMENTS, expand_all
from sparsemem.tasks.text import read_folder


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    words = "the cat sat on the mat and the dog ran to the log ".split()
    text = " ".join(words[(i * 7) % len(words)] for i in range(3000))
    (folder / "a.txt").write_text(text[:9000])
    (folder / "sub" / "b.md").write_text(text[9000:])
    (folder / ".hidden").write_text("skipped")
    return folder


def test_read_folder_joins_files_in_order(corpus):
    data = read_folder(str(corpus), 10**9)
    a, b = (corpus / "a.txt").read_bytes(), (corpus / "sub" / "b.md").read_bytes()
    assert data == a + b"\n" + b
    assert read_folder(str(corpus), 100) == a[:100]


def test_text_task_windows_and_split(corpus):
    cfg = sm.RunConfig.from_dict({}, [f"task.corpus={corpus}", "task.kind=text", "task.seq_len=32", "task.output=all"])
    task = sm.make_task(cfg.task)
    data = read_folder(str(corpus), 10**9)
    assert len(task.train_data) + len(task.val_data) == len(data)
    x, y = task.sample(4, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 32) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one byte
    joined = bytes(task.train_data.tolist())
    for row in torch.cat([x, y[:, -1:]], 1).tolist():
        assert bytes(row) in joined
    xv, _ = task.validation_set(3)
    assert torch.equal(xv, task.validation_set(3)[0])


def test_byte_lm_trains_below_uniform(corpus, tmp_path):
    cfg = sm.RunConfig.from_dict(
        {},
        [
            f"task.corpus={corpus}",
            "task.kind=text",
            "task.seq_len=32",
            "task.output=all",
            "model.layers=2",
            "model.dim=32",
            "model.heads=2",
            "model.ffn_width=64",
            "model.layer_norm=true",
            "train.steps=60",
            "train.batch_size=8",
            "train.lr=0.01",
            "train.val_samples=16",
        ],
    )
    result = sm.train(cfg, out_dir=tmp_path / "run", progress=False)
    assert result["status"] == "done" and result["val_rel"] is None
    assert result["val_loss"] < 0.6 * torch.log(torch.tensor(256.0)).item()  # well below a uniform guess


@pytest.mark.parametrize(
    "bad,needle",
    [(["task.corpus=/no/such/dir"], "task.corpus"), (["task.output=last"], "task.output"), ([], "task.corpus")],
)
def test_text_bad_config(corpus, bad, needle):
    base = ["task.kind=text", "task.output=all"] + ([f"task.corpus={corpus}"] if bad else [])
    with pytest.raises(sm.ConfigError, match=needle):
        sm.RunConfig.from_dict({}, base + bad)


def test_text_corpus_too_small(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_text("tiny")
    cfg = sm.RunConfig.from_dict({}, ["task.kind=text", "task.output=all", f"task.corpus={tmp_path / 'c'}"])
    with pytest.raises(sm.ConfigError, match="byte tokens are too few for seq_len 64; each split needs at least"):
        sm.make_task(cfg.task)


def test_text_experiments_need_a_corpus(corpus, tmp_path):
    for name in ("1a_text", "3b_text"):
        with pytest.raises(sm.ConfigError, match="--corpus"):
            EXPERIMENTS[name].make_specs("quick")
        runs = expand_all(EXPERIMENTS[name].make_specs("quick", str(corpus)))
        assert runs and all(r.task.kind == "text" for r in runs)
    proc = subprocess.run(
        [sys.executable, "-m", "sparsemem", "reproduce", "3b_text", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "--corpus" in proc.stderr and not (tmp_path / "o").exists()


def test_the_paper_profile_of_the_text_experiments_follows_the_paper(corpus):
    """GPT-2-small-class decoders on GPT-2 tokens, about 100k tokens an iteration for 10,000 iterations
    (about 1B tokens a model), nine models; 1a's +heads model as large as its +layer model."""
    from sparsemem.experiments.text import SHAPES, lm_params, variants_1a

    runs = {n: expand_all(EXPERIMENTS[n].make_specs("paper", str(corpus))) for n in ("1a_text", "3b_text")}
    assert len(runs["1a_text"]) == 3 and len(runs["3b_text"]) == 6
    for r in runs["1a_text"] + runs["3b_text"]:
        assert r.task.tokenizer == "gpt2" and r.task.seq_len == 1024 and r.train.steps == 10_000
        assert 90_000 <= r.train.batch_size * r.task.seq_len <= 110_000
        assert r.model.layer_norm and r.model.head_size == 64
    assert {r.model.dim for r in runs["3b_text"]} == {512, 768, 1024}
    (L, D, H) = SHAPES["paper"]["bases_1a"][0]
    v = variants_1a("paper")
    plus_layer = lm_params("paper", (L, D, H), **v["+layer"])
    plus_heads = lm_params("paper", (L, D, H), **v["+heads"])
    assert v["+layer"] == {"layers": L + 1} and set(v["+heads"]) == {"heads"}
    assert plus_heads >= plus_layer and abs(plus_heads / plus_layer - 1) < 0.05


def test_text_analyses_read_the_variants_off_the_stored_runs():
    from sparsemem.experiments.base import Results

    def row(L, D, H, att, loss):
        return {
            "name": f"x/L{L}H{H}",
            "config": {"model": {"layers": L, "dim": D, "heads": H, "attention": att}},
            "status": "done",
            "val_loss": loss,
            "params": L * H,
        }

    res = Results([row(6, 768, 12, "dp", 3.0), row(7, 768, 12, "dp", 2.5), row(6, 768, 19, "dp", 2.9)])
    _, verdict = EXPERIMENTS["1a_text"].analyse(res)
    assert verdict.holds is True and "drop from layer 0.5" in verdict.ours
    res = Results(
        [
            row(2, 64, 2, "dp", 2.0),
            row(2, 64, 2, "dp_free", 2.1),
            row(4, 128, 4, "dp", 1.5),
            row(4, 128, 4, "dp_free", 1.4),
        ]
    )
    _, verdict = EXPERIMENTS["3b_text"].analyse(res)
    assert verdict.holds is False
