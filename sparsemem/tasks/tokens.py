"""Tokenizers and memory-mapped token files for the text task.

A corpus is tokenized once into a token file (``<cache>/<key>.bin``: the ids as uint16, or uint32 for a
vocabulary above 65,536, with ``<key>.json`` beside it: tokenizer, vocabulary size, token count, the
source); a text task then reads random windows straight from the memory map, so a corpus far larger
than memory costs only the pages a batch touches, and the windows follow the task's generator (a resumed
run reads the same windows). The key digests the corpus's identity (its files' paths, sizes and
modification times, or ``openwebtext``), ``max_bytes`` and the tokenizer, so a changed corpus is
tokenized again. The cache folder is ``$SPARSEMEM_TOKEN_CACHE``, else ``~/.cache/sparsemem/tokens``.

Tokenizers (``task.tokenizer``):

- ``byte``: the raw bytes, vocabulary 256 (the offline default);
- ``gpt2``: GPT-2's BPE through tiktoken (50,257 ids; tiktoken downloads its ranks once, so it needs the
  network the first time);
- ``bpe``: a byte-level BPE of ``task.vocab_size`` ids trained on the corpus with the ``tokenizers``
  library, saved beside the token file.

gpt2 and bpe encode the corpus decoded as UTF-8 (invalid bytes replaced) in pieces cut at line ends.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from ..fields import ConfigError
from ..files import building, check_writable_dir

PIECE = 1 << 20  # characters per encoding call (cut at a line end)
DIGEST_LIMIT = 1 << 30  # token files up to this size are checked against their SHA-256 when read


class ByteTokenizer:
    name = "byte"
    vocab_size = 256

    def encode(self, text: bytes) -> np.ndarray:
        return np.frombuffer(text, dtype=np.uint8).astype(np.int64)

    def decode(self, ids) -> bytes:
        return bytes(int(i) for i in ids)


class TiktokenTokenizer:
    """A tiktoken encoding (GPT-2's by default)."""

    name = "gpt2"

    def __init__(self, encoding=None):
        self.enc = encoding if encoding is not None else gpt2_encoding()
        self.vocab_size = self.enc.n_vocab

    def encode(self, text: bytes) -> np.ndarray:
        parts = [self.enc.encode_ordinary(piece) for piece in _pieces(text.decode("utf-8", errors="replace"))]
        return np.fromiter((i for p in parts for i in p), dtype=np.int64)

    def decode(self, ids) -> bytes:
        return self.enc.decode_bytes([int(i) for i in ids])


def gpt2_encoding():  # pragma: no cover - downloads GPT-2's ranks the first time (tests inject their own)
    try:
        import tiktoken
    except ImportError:
        raise ConfigError("task.tokenizer = gpt2 needs tiktoken: pip install 'sparsemem[text]'") from None
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as err:  # noqa: BLE001 - no network, no cached ranks
        raise ConfigError(
            f"task.tokenizer = gpt2: tiktoken could not load GPT-2's ranks ({err}); it needs the network once"
        ) from None


class BPETokenizer:
    """A byte-level BPE (the ``tokenizers`` library), trained on the corpus or loaded from its file."""

    name = "bpe"

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()

    @classmethod
    def train(cls, text: bytes, vocab_size: int) -> "BPETokenizer":
        try:
            from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        except ImportError:
            raise ConfigError("task.tokenizer = bpe needs tokenizers: pip install 'sparsemem[text]'") from None
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
        )
        tok.train_from_iterator(_pieces(text.decode("utf-8", errors="replace")), trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: Path) -> "BPETokenizer":
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    def save(self, path: Path) -> None:
        self.tok.save(str(path))

    def encode(self, text: bytes) -> np.ndarray:
        pieces = list(_pieces(text.decode("utf-8", errors="replace")))
        return np.fromiter((i for e in self.tok.encode_batch(pieces) for i in e.ids), dtype=np.int64)

    def decode(self, ids) -> bytes:
        return self.tok.decode([int(i) for i in ids]).encode("utf-8")


def _pieces(text: str) -> Iterator[str]:
    """``text`` in pieces of about PIECE characters, each cut after a line end (when there is one)."""
    start = 0
    while start < len(text):
        end = min(len(text), start + PIECE)
        if end < len(text):
            cut = text.rfind("\n", start, end)
            end = cut + 1 if cut > start else end
        yield text[start:end]
        start = end


def cache_dir() -> Path:
    return Path(os.environ.get("SPARSEMEM_TOKEN_CACHE") or Path.home() / ".cache" / "sparsemem" / "tokens")


def corpus_identity(corpus: str, max_bytes: int) -> str:
    """What the token file's key digests: a named corpus's archive and split, the files of a folder (path,
    size, mtime) or the dataset name."""
    from .corpora import CORPORA, identity

    if corpus in CORPORA:
        return json.dumps([identity(CORPORA[corpus]), max_bytes])
    if corpus == "openwebtext":
        return f"openwebtext:{max_bytes}"
    root = Path(corpus).resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    stats = [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return json.dumps([str(root), max_bytes, stats])


def token_file(
    corpus: str,
    max_bytes: int,
    tokenizer: str,
    vocab_size: int,
    read: Callable[[], tuple[bytes, Optional[bytes]]],
    folder: Optional[Path] = None,
):
    """The token ids of a corpus as a read-only memory map, the tokenizer and the sidecar's metadata: built
    (and kept) on the first call, read from the cache after. ``read`` returns the corpus's training and
    validation bytes (validation None: one text, split by position later). With a validation text the
    training tokens come first, ``meta["train_count"]`` of them, and a BPE learns from them alone. A cache
    whose token file, sidecar or tokenizer is missing, short or unreadable is built again."""
    folder = Path(folder) if folder is not None else cache_dir()
    key = hashlib.sha256(
        json.dumps([corpus_identity(corpus, max_bytes), tokenizer, vocab_size if tokenizer == "bpe" else None]).encode()
    ).hexdigest()[:24]
    bin_path, meta_path, tok_path = (folder / f"{key}{ext}" for ext in (".bin", ".json", ".tokenizer.json"))
    meta = _read_meta(meta_path)
    tok = _cached_tokenizer(tokenizer, tok_path) if _sound(meta, bin_path) else None
    if tok is None:
        check_writable_dir(folder, "token cache ($SPARSEMEM_TOKEN_CACHE)", ConfigError)
        with building(folder, f"{key}.lock"):
            meta = _read_meta(meta_path)  # another process may have built it while this one waited
            tok = _cached_tokenizer(tokenizer, tok_path) if _sound(meta, bin_path) else None
            if tok is None:
                meta, tok = _build(*read(), tokenizer, vocab_size, bin_path, meta_path, tok_path, corpus)
    dtype = np.uint16 if meta["itemsize"] == 2 else np.uint32
    ids = np.memmap(bin_path, dtype=dtype, mode="r", shape=(meta["count"],)) if meta["count"] else np.zeros(0, dtype)
    return ids, tok, meta


def _read_meta(path: Path) -> Optional[dict]:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sound(meta: Optional[dict], bin_path: Path) -> bool:
    """The sidecar is whole and the token file has exactly the bytes it names (and, up to DIGEST_LIMIT
    bytes, the SHA-256 it names: checking a larger one would cost more than a cache is meant to save)."""
    try:
        count, itemsize, cut = int(meta["count"]), int(meta["itemsize"]), meta.get("train_count")
        size = bin_path.stat().st_size
        if size != count * itemsize or not (cut is None or 0 < int(cut) <= count):
            return False
        return size > DIGEST_LIMIT or meta.get("sha256") in (None, _file_digest(bin_path))
    except (TypeError, KeyError, ValueError, OSError):
        return False


def _cached_tokenizer(tokenizer: str, tok_path: Path):
    """The cached tokenizer, or None where its file is missing or unreadable (the cache is then rebuilt)."""
    if tokenizer == "byte":
        return ByteTokenizer()
    if tokenizer == "gpt2":
        return TiktokenTokenizer()
    try:
        return BPETokenizer.load(tok_path)
    except ImportError:
        raise ConfigError("task.tokenizer = bpe needs tokenizers: pip install 'sparsemem[text]'") from None
    except Exception:  # noqa: BLE001 - a missing or damaged tokenizer file: rebuild
        return None


def _build(
    raw: bytes,
    val: Optional[bytes],
    tokenizer: str,
    vocab_size: int,
    bin_path: Path,
    meta_path: Path,
    tok_path: Path,
    corpus: str,
) -> tuple:
    """Tokenize ``raw`` (and ``val`` after it) into the token file and its sidecar; returns (meta, tokenizer)."""
    if tokenizer == "byte":
        tok = ByteTokenizer()
    elif tokenizer == "gpt2":
        tok = TiktokenTokenizer()
    else:
        tok = BPETokenizer.train(raw, vocab_size)
        tmp = tok_path.with_name(tok_path.name + ".partial")
        tok.save(tmp)
        os.replace(tmp, tok_path)
    ids = tok.encode(raw)
    train_count = None
    if val is not None:
        train_count = int(len(ids))
        ids = np.concatenate([ids, tok.encode(val)])
    itemsize = 2 if tok.vocab_size <= 1 << 16 else 4
    tmp = bin_path.with_name(bin_path.name + ".partial")
    ids.astype(np.uint16 if itemsize == 2 else np.uint32).tofile(tmp)
    os.replace(tmp, bin_path)
    meta = {
        "sha256": _file_digest(bin_path),
        "tokenizer": tokenizer,
        "vocab_size": tok.vocab_size,
        "count": int(len(ids)),
        "itemsize": itemsize,
        "train_count": train_count,
        "corpus": corpus,
        "bytes": len(raw) + (len(val) + 1 if val is not None else 0),
    }
    tmp = meta_path.with_name(meta_path.name + ".partial")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, meta_path)
    return meta, tok
