"""Files and folders as every layer writes them: atomic writes, a writable-folder check, a lock for
caches built once."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Optional, Union


def atomic_write(path: Union[str, Path], data: Union[str, bytes, Callable[[Path], None]]) -> None:
    """Write text, bytes, or whatever ``data(tmp_path)`` writes, to ``path`` all at once: a reader sees
    the old file or the new one, never half of it (a temporary beside it, then os.replace; the temporary is
    removed when the write fails)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        if isinstance(data, str):
            tmp.write_text(data)
        elif isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            data(tmp)
        os.replace(tmp, path)
    except OSError as err:  # a full disk: no half-written temporary stays behind, and the error names the file
        tmp.unlink(missing_ok=True)
        if err.filename is None:
            raise OSError(err.errno, err.strerror, str(tmp)) from err
        raise
    except BaseException:  # a kill
        tmp.unlink(missing_ok=True)
        raise


def first_missing(path: Path) -> Optional[Path]:
    """The outermost folder of ``path`` that does not exist yet (what making ``path`` would create), or
    None when ``path`` exists."""
    path = Path(path).absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


@contextlib.contextmanager
def building(folder: Path, lock_name: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder/lock_name`` for the block, so one process at a time builds a cache
    entry (parallel workers that need the same corpus wait for the first, then read what it built). If
    the block raises, the folders it made are removed: a failed build leaves nothing behind. Without
    fcntl (Windows) the block runs unlocked."""
    made = first_missing(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with open(folder / lock_name, "a") as handle:
            try:
                import fcntl

                fcntl.flock(handle, fcntl.LOCK_EX)
            except ImportError:  # pragma: no cover - not POSIX
                pass
            yield
    except BaseException:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise


def check_writable_dir(path: Union[str, Path], what: str, error: type) -> None:
    """``path`` is a folder that exists and takes new files, or one that can be made: else ``error``.

    Probes the nearest existing folder by making and removing one temporary file in it, so a read-only
    filesystem is caught as well as missing permissions; nothing is left behind.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise error(f"{what} {str(p)!r} is a file, not a folder")
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise error(f"{what} {str(p)!r} cannot be made: {str(probe)!r} is a file")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        raise error(f"{what} {str(p)!r} cannot be written ({str(probe)!r}: {err.strerror or err})") from None
