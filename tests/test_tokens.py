"""Tokenizers round-trip text; the token file is built once and memory-mapped; windows resume exactly."""

import json

import numpy as np
import pytest
import torch

import sparsemem as sm
from sparsemem.tasks import tokens

TEXT = (
    "The cat sat on the mat. The dog ran to the log!\n"
    "Numbers 12 345, unicode: caf\u00e9 \u00fcber na\u00efve \u2014 \u03bb\u03b3 \u65e5\u672c\n"
    "  indented line\twith a tab\n\n"
) * 40


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text(TEXT)
    (folder / "b.txt").write_text(TEXT.upper())
    return folder


@pytest.fixture
def tiny_gpt2(monkeypatch):
    """A small tiktoken encoding with GPT-2's split pattern, injected where GPT-2's ranks would be
    downloaded: bytes 0-255 plus a few merges."""
    tiktoken = pytest.importorskip("tiktoken")
    ranks = {bytes([i]): i for i in range(256)}
    for merge in (b"th", b"the", b" the", b"at", b" c", b" cat", b"og", b"in"):
        ranks[merge] = len(ranks)
    pattern = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    enc = tiktoken.Encoding(name="tiny-gpt2", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
    monkeypatch.setattr(tokens, "gpt2_encoding", lambda: enc)
    return enc


def test_byte_tokenizer_round_trips():
    tok = tokens.ByteTokenizer()
    raw = TEXT.encode() + bytes(range(256))
    assert tok.decode(tok.encode(raw)) == raw and tok.vocab_size == 256


def test_gpt2_tokenizer_round_trips_and_merges(tiny_gpt2):
    tok = tokens.TiktokenTokenizer()
    raw = TEXT.encode()
    ids = tok.encode(raw)
    assert tok.decode(ids) == raw
    assert len(ids) < len(raw)  # the merges apply
    assert list(tok.encode(b" the cat")) == tiny_gpt2.encode_ordinary(" the cat")


def test_bpe_trained_on_the_corpus_round_trips(tmp_path):
    pytest.importorskip("tokenizers")
    tok = tokens.BPETokenizer.train(TEXT.encode(), vocab_size=300)
    raw = TEXT.encode()
    ids = tok.encode(raw)
    assert tok.decode(ids) == raw and tok.vocab_size <= 300 and len(ids) < 0.7 * len(raw)
    tok.save(tmp_path / "t.json")
    again = tokens.BPETokenizer.load(tmp_path / "t.json")
    assert list(again.encode(raw)) == list(ids)
    other = "Unseen words: zebra quartz \u00e9t\u00e9.\n".encode()
    assert tok.decode(tok.encode(other)) == other


def test_pieces_cut_at_line_ends(monkeypatch):
    monkeypatch.setattr(tokens, "PIECE", 50)
    pieces = list(tokens._pieces(TEXT))
    assert "".join(pieces) == TEXT and all(p.endswith("\n") for p in pieces[:-1])


@pytest.mark.parametrize("tokenizer", ["byte", "gpt2", "bpe"])
def test_text_task_builds_the_token_file_once_and_memory_maps_it(corpus, tmp_path, monkeypatch, tokenizer, request):
    if tokenizer == "gpt2":
        request.getfixturevalue("tiny_gpt2")
    if tokenizer == "bpe":
        pytest.importorskip("tokenizers")
    monkeypatch.setenv("SPARSEMEM_TOKEN_CACHE", str(tmp_path / "cache"))
    over = [
        "task.kind=text",
        "task.output=all",
        f"task.corpus={corpus}",
        "task.seq_len=16",
        f"task.tokenizer={tokenizer}",
        "task.vocab_size=320",
    ]
    task = sm.make_task(sm.RunConfig.from_dict({}, over).task)
    (meta_path,) = (tmp_path / "cache").glob("*[0-9a-f].json")
    meta = json.loads(meta_path.read_text())
    assert meta["tokenizer"] == tokenizer and meta["count"] == len(task.train_data) + len(task.val_data)
    assert isinstance(task.train_data, np.memmap)
    ids = np.concatenate([task.train_data, task.val_data])
    raw = (corpus / "a.txt").read_bytes() + b"\n" + (corpus / "b.txt").read_bytes()
    assert task.tokenizer.decode(ids) == raw  # the whole corpus, through the file
    assert task.vocab == task.tokenizer.vocab_size and int(ids.max()) < task.vocab
    stamp = meta_path.stat().st_mtime_ns
    again = sm.make_task(sm.RunConfig.from_dict({}, over).task)  # read from the cache, not rebuilt
    assert meta_path.stat().st_mtime_ns == stamp and np.array_equal(again.train_data, task.train_data)
    (corpus / "a.txt").write_text(TEXT + "more text\n")  # a changed corpus is tokenized again
    changed = sm.make_task(sm.RunConfig.from_dict({}, over).task)
    assert len(changed.train_data) + len(changed.val_data) > len(ids)
    model = sm.make_model(sm.RunConfig.from_dict({}, over).model, task)
    assert model.head.out_features == task.vocab


def test_windows_resume_exactly(corpus, tmp_path, monkeypatch):
    """A generator restored to a saved state reads the same windows from a fresh task (as a resumed run
    does after its checkpoint), and the windows are the token file's own."""
    monkeypatch.setenv("SPARSEMEM_TOKEN_CACHE", str(tmp_path / "cache"))
    cfg = sm.RunConfig.from_dict({}, ["task.kind=text", "task.output=all", f"task.corpus={corpus}", "task.seq_len=16"])
    task = sm.make_task(cfg.task)
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        task.sample(4, gen)
    state = gen.get_state()
    want = [task.sample(4, gen) for _ in range(3)]
    fresh = sm.make_task(cfg.task)
    gen2 = torch.Generator()
    gen2.set_state(state)
    got = [fresh.sample(4, gen2) for _ in range(3)]
    for (x, y), (a, b) in zip(want, got):
        assert torch.equal(x, a) and torch.equal(y, b)
    x, y = want[0]
    data = torch.from_numpy(np.asarray(task.train_data).astype(np.int64))
    for row, target in zip(x, y):
        start = next(i for i in range(len(data) - 16) if torch.equal(data[i : i + 16], row))
        assert torch.equal(data[start + 1 : start + 17], target)


def test_a_text_run_with_bpe_tokens_trains(corpus, tmp_path, monkeypatch):
    pytest.importorskip("tokenizers")
    monkeypatch.setenv("SPARSEMEM_TOKEN_CACHE", str(tmp_path / "cache"))
    cfg = sm.RunConfig.from_dict(
        {},
        [
            "task.kind=text",
            "task.output=all",
            f"task.corpus={corpus}",
            "task.seq_len=16",
            "task.tokenizer=bpe",
            "task.vocab_size=300",
            "model.dim=16",
            "model.ffn_width=16",
            "model.layer_norm=true",
            "train.steps=40",
            "train.batch_size=8",
            "train.val_samples=16",
            "train.lr=3e-3",
        ],
    )
    result = sm.train(cfg, out_dir=tmp_path / "run", progress=False)
    assert result["status"] == "done" and result["val_loss"] < np.log(300)  # below a uniform guess
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["tokens_per_s"] > 0 for r in rows)  # language models log their throughput
    assert all("mfu" not in r for r in rows)  # no known peak on a CPU
    flops = result.model.flops_per_token(16)
    for r in rows:  # model FLOP/s from 6 N + 12 L A T per token (rounding of tokens_per_s aside)
        assert r["model_tflops"] == pytest.approx(flops * r["tokens_per_s"] / 1e12, rel=1e-3)


def test_flops_per_token_and_mfu_against_a_given_peak(tmp_path, monkeypatch):
    """A language model's training FLOPs per token are 6 N + 12 L A T; with SPARSEMEM_PEAK_TFLOPS set, text
    runs log MFU = model FLOP/s over that peak; a peak that is not a positive number is refused before
    anything is written."""
    from sparsemem.throughput import peak_flops

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("the quick brown fox jumps over the lazy dog. " * 200)
    cfg = sm.RunConfig.from_dict(
        {},
        [
            "task.kind=text",
            "task.output=all",
            f"task.corpus={corpus}",
            "task.seq_len=16",
            "model.dim=16",
            "model.heads=2",
            "model.layers=2",
            "model.ffn_width=16",
            "model.layer_norm=true",
            "train.steps=20",
            "train.batch_size=4",
            "train.val_samples=8",
            "train.eval_every=10",
        ],
    )
    model = sm.make_model(cfg.model, sm.make_task(cfg.task))
    n = sum(p.numel() for p in model.parameters())
    assert model.flops_per_token(16) == 6 * n + 12 * 2 * 16 * 16
    monkeypatch.setenv("SPARSEMEM_PEAK_TFLOPS", "0.5")
    assert peak_flops(torch.device("cpu"), "off") == 0.5e12
    sm.train(cfg, out_dir=tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["mfu"] == pytest.approx(r["model_tflops"] / 0.5, rel=1e-3) for r in rows)
    for bad in ("0", "-3", "fast"):
        monkeypatch.setenv("SPARSEMEM_PEAK_TFLOPS", bad)
        with pytest.raises(sm.ConfigError, match="SPARSEMEM_PEAK_TFLOPS"):
            sm.train(cfg, out_dir=tmp_path / f"bad{bad}", progress=False)
        assert not (tmp_path / f"bad{bad}").exists()
