"""Language modelling on a text corpus: predict every next token.

The corpus is a named one (``corpora.py``: ``shakespeare``, fetched once and split by work), a local
folder (every regular file under it, in sorted order, read as bytes and joined by newlines) or
``openwebtext`` through the `datasets` library where the network allows. It is tokenized once into a
memory-mapped token file (``tokens.py``: bytes, GPT-2's BPE or a BPE trained on the training split).
A named corpus holds out whole works for validation; a folder or openwebtext holds out the last tenth
of its tokens. x and y are (B, T) token ids, y shifted by one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from ..fields import ConfigError, FieldError, Int
from .base import VALIDATION_SEED_OFFSET, Task, TaskConfigBase


class TextTaskConfig(TaskConfigBase):
    """Next-token prediction on a corpus: a named corpus (shakespeare), a folder of text files, or openwebtext
    (needs `datasets`)."""

    kind: Literal["text"] = "text"
    corpus: Optional[str] = None
    max_bytes: Int = Field(50_000_000, ge=1)  # read at most this many bytes of the corpus
    tokenizer: Literal["byte", "gpt2", "bpe"] = "byte"  # tokens.py
    vocab_size: Int = Field(8192, ge=257, le=1 << 20)  # bpe: the size of the trained vocabulary

    @model_validator(mode="after")
    def _check(self) -> "TextTaskConfig":
        from .corpora import CORPORA

        named = ", ".join([*CORPORA, "openwebtext"])
        if not self.corpus:
            raise FieldError("corpus", self.corpus, f"a text task needs a corpus: a folder of text files or {named}")
        if self.corpus != "openwebtext" and self.corpus not in CORPORA and not Path(self.corpus).is_dir():
            raise FieldError("corpus", self.corpus, f"not a folder nor a named corpus; give a folder or one of {named}")
        if self.output != "all":
            raise FieldError("output", self.output, "a text task predicts every next byte: output must be all")
        return self


def read_folder(folder: str, max_bytes: int) -> bytes:
    """Every regular file under ``folder`` (sorted, recursive), joined by newlines, at most max_bytes."""
    parts, total = [], 0
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith(".")):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        parts.append(data)
        total += len(data) + 1
        if total >= max_bytes:
            break
    return b"\n".join(parts)[:max_bytes]


def read_openwebtext(max_bytes: int) -> bytes:  # pragma: no cover - needs the network
    """The first max_bytes of OpenWebText, streamed through `datasets`."""
    try:
        from datasets import load_dataset
    except ImportError:
        raise ConfigError("task.corpus = openwebtext needs `datasets`: pip install 'sparsemem[text]'") from None
    parts, total = [], 0
    for doc in load_dataset("Skylion007/openwebtext", split="train", streaming=True):
        data = doc["text"].encode("utf-8")
        parts.append(data)
        total += len(data) + 1
        if total >= max_bytes:
            break
    return b"\n".join(parts)[:max_bytes]


class TextTask(Task):
    """Next-byte prediction; the loss is cross-entropy in nats per byte."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.seq_len = cfg.seq_len
        self.dim = 1

        from .corpora import CORPORA, read_split
        from .tokens import token_file

        def read() -> tuple[bytes, Optional[bytes]]:
            if cfg.corpus in CORPORA:
                train, val = read_split(CORPORA[cfg.corpus])
                return train[: cfg.max_bytes], val
            if cfg.corpus == "openwebtext":
                return read_openwebtext(cfg.max_bytes), None
            return read_folder(cfg.corpus, cfg.max_bytes), None

        data, self.tokenizer, self.token_meta = token_file(
            cfg.corpus, cfg.max_bytes, cfg.tokenizer, cfg.vocab_size, read
        )
        self.vocab = self.tokenizer.vocab_size
        cut = self.token_meta.get("train_count")
        cut = int(len(data) * 0.9) if cut is None else cut
        self.train_data, self.val_data = data[:cut], data[cut:]
        need = cfg.seq_len + 2
        if len(self.val_data) < need or len(self.train_data) < need:
            raise ConfigError(
                f"task.corpus = {cfg.corpus!r}: {len(self.train_data)} training and {len(self.val_data)} validation "
                f"{cfg.tokenizer} tokens are too few for seq_len {cfg.seq_len}; each split needs at least {need}"
            )

    def _windows(self, data, batch: int, generator: torch.Generator):
        """``batch`` random windows of T + 1 tokens of the memory map, starts drawn from ``generator``."""
        T = self.seq_len
        starts = torch.randint(0, len(data) - T - 1, (batch,), generator=generator, device=generator.device)
        idx = starts.cpu()[:, None] + torch.arange(T + 1)
        w = torch.from_numpy(np.asarray(data[idx.numpy()]).astype(np.int64)).to(generator.device)
        return w[:, :-1], w[:, 1:]

    def sample(self, batch: int, generator: torch.Generator, dtype=torch.float32):
        return self._windows(self.train_data, batch, generator)

    def validation_set(self, n: int, device="cpu", dtype=torch.float32):
        gen = torch.Generator(device=device).manual_seed(self.cfg.seed + VALIDATION_SEED_OFFSET)
        return self._windows(self.val_data, n, gen)

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(pred.reshape(-1, pred.shape[-1]).float(), y.reshape(-1))

    def variance(self, y: torch.Tensor):
        return None


def prepare(cfgs) -> int:
    """Fetch, split and tokenize each corpus the text runs among ``cfgs`` read, once, in this process: before
    parallel workers start (they then read the caches) and before a command writes anything, so a corpus
    that cannot be had or is too small stops it with one line. Returns how many text tasks were checked."""
    seen = set()
    for cfg in cfgs:
        if cfg.task.kind != "text":
            continue
        key = cfg.task.model_dump_json()
        if key not in seen:
            seen.add(key)
            TextTask(cfg.task)
    return len(seen)
