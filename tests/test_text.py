"""The text corpus loader and byte language models, on a corpus the test writes."""

import subprocess
import sys

import pytest
import torch

import sparsemem as sm
from sparsemem.experiments import EXPERIMENTS, expand_all
from sparsemem.experiments.verdicts import INCONCLUSIVE
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
    (about 1B tokens a model), twelve models (3b: DP, DP-free at DP's FFN width, DP-free at DP's parameter
    count, per size); 1a's +heads model as large as its +layer model."""
    from sparsemem.experiments.text import SHAPES, lm_params, variants_1a

    runs = {n: expand_all(EXPERIMENTS[n].make_specs("paper", str(corpus))) for n in ("1a_text", "3b_text")}
    assert len(runs["1a_text"]) == 3 and len(runs["3b_text"]) == 9
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

    def row(L, D, H, att, loss, ffn=None):
        return {
            "name": f"x/L{L}H{H}",
            "config": {"model": {"layers": L, "dim": D, "heads": H, "attention": att, "ffn_width": ffn or 4 * D}},
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
    # DP-free at DP's parameter count (a wider FFN) is the arm compared where it ran; the plain one stays beside
    res = Results([row(2, 64, 2, "dp", 2.0), row(2, 64, 2, "dp_free", 2.1), row(2, 64, 2, "dp_free", 1.9, ffn=320)])
    tables, verdict = EXPERIMENTS["3b_text"].analyse(res)
    assert verdict.holds is False and tables[0].rows[0][5:8] == [320, "1.9", "2.1"]


def test_the_text_profile_builds_matched_arms_over_three_seeds():
    """45 distinct runs (1a's two bases share their configs with two of 3b's DP models), every seed on the
    same held-out windows, each 1a arm at least as large as +layer and within 3% of it, each matched DP-free
    model at least as large as its DP model and within 0.1% of it."""
    from sparsemem.experiments.text import SHAPES, lm_params, variants_1a

    runs = {n: expand_all(EXPERIMENTS[n].make_specs("text", "shakespeare")) for n in ("1a_text", "3b_text")}
    assert len(runs["1a_text"]) == 24 and len(runs["3b_text"]) == 27
    everything = runs["1a_text"] + runs["3b_text"]
    assert len({r.config_hash() for r in everything}) == 45
    from sparsemem.experiments.text import matched_width

    for size in SHAPES["text"]["sizes_3b"]:
        dp, free = (
            lm_params("text", size),
            lm_params("text", size, attention="dp_free", ffn_width=matched_width("text", size)),
        )
        assert dp <= free <= 1.001 * dp
    for r in everything:
        assert (r.task.corpus, r.task.tokenizer, r.task.vocab_size, r.task.seq_len) == ("shakespeare", "bpe", 2048, 128)
        assert r.model.rpe == "lin" and r.model.layer_norm
    assert len({r.task.model_dump_json() for r in everything}) == 1  # one task: the same validation windows
    for name, group in runs.items():
        models = {}
        for r in group:
            models.setdefault(r.model.model_dump_json(), set()).add(r.train.seed)
        assert all(seeds == {0, 1, 2} for seeds in models.values()), name
    for base in SHAPES["text"]["bases_1a"]:
        arms = variants_1a("text", base)
        assert set(arms) == {"base", "+layer", "+heads", "+width"}
        layer = lm_params("text", base, **arms["+layer"])
        for arm in ("+heads", "+width"):
            assert 1.0 <= lm_params("text", base, **arms[arm]) / layer < 1.03, (base, arm)


def _lm_row(seed, L, D, H, W, loss, attention="dp"):
    model = {"layers": L, "dim": D, "heads": H, "ffn_width": W, "attention": attention}
    train, task = {"batch_size": 32, "seed": seed}, {"seq_len": 128}
    return {
        "name": f"x/L{L}D{D}H{H}W{W}{attention}/s{seed}",
        "config": {"model": model, "train": train, "task": task},
        "status": "done",
        "val_loss": loss,
        "params": L * D + H + W,
        "steps": 300,
        "seconds": 60.0,
    }


@pytest.mark.parametrize(
    "heads,holds",
    [
        ((2.90, 2.95, 2.92), True),  # +layer lower at every pairing of seeds
        ((2.54, 2.60, 2.53), INCONCLUSIVE),  # the spreads overlap: inconclusive
        ((2.30, 2.31, 2.32), False),  # +heads lower at every pairing: the claim fails
    ],
)
def test_1a_text_is_three_way_over_seeds(heads, holds):
    from sparsemem.experiments.base import Results

    cells = {
        (1, 64, 2, 256): (3.00, 3.10, 3.05),
        (2, 64, 2, 256): (2.50, 2.52, 2.55),
        (1, 64, 9, 256): heads,
        (1, 64, 2, 656): (2.80, 2.85, 2.82),
    }
    rows = [_lm_row(s, *shape, loss) for shape, losses in cells.items() for s, loss in enumerate(losses)]
    tables, verdict = EXPERIMENTS["1a_text"].analyse(Results(rows))
    assert verdict.holds is holds
    assert verdict.reproduced is holds  # the paper's direction: a layer beats heads
    assert "drop from layer 0.53" in verdict.ours and "0.802" in verdict.paper_number
    assert [r[0] for r in tables[0].rows] == ["D=64 base", "D=64 +layer", "D=64 +heads", "D=64 +width"]
    assert tables[0].rows[0][5] == 300 * 32 * 128  # tokens seen


@pytest.mark.parametrize(
    "free,holds",
    [
        ((5.1, 5.2, 5.15), True),  # DP lower at every size and pairing
        ((5.02, 4.9, 5.1), INCONCLUSIVE),  # overlaps at the largest size
        ((4.8, 4.85, 4.9), False),  # DP-free at least as good at every pairing at one size
    ],
)
def test_3b_text_is_three_way_over_seeds(free, holds):
    from sparsemem.experiments.base import Results

    cells = {
        ((1, 64, 2, 256), "dp"): (5.80, 5.82, 5.81),
        ((1, 64, 2, 256), "dp_free"): (5.90, 5.95, 5.92),
        ((2, 128, 4, 512), "dp"): (5.00, 5.01, 5.03),
        ((2, 128, 4, 512), "dp_free"): free,
    }
    rows = [
        _lm_row(s, *shape, loss, attention=att)
        for (shape, att), losses in cells.items()
        for s, loss in enumerate(losses)
    ]
    _, verdict = EXPERIMENTS["3b_text"].analyse(Results(rows))
    assert verdict.holds is holds and verdict.reproduced is holds
    assert "5.796 vs 5.83" in verdict.paper_number
