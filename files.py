"""
Files that are never half-written: the one atomic-write helper, and downloads checked before use.

Everything the repo writes that a user or a later run reads (checkpoints, shards, manifests,
transcripts, logs' companions, downloads) goes through `atomic_write`: the bytes go to a temporary
name in the same directory, are flushed to disk, and only then take the final name. A kill, a full
disk or an exception leaves the old file or the new one, never a mix, and no temporary behind.
A directory written as a whole (convert.py's Hugging Face and CTranslate2 outputs) goes through
`atomic_directory`, the same promise for a set of files.
"""
import contextlib
import glob
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request

TMP_SUFFIX = ".tmp"


class DownloadError(OSError):
    """A download failed or its bytes were not the expected ones; the message names the URL."""


def temp_name(path: str) -> str:
    """`path`'s temporary name while it is being written: unique per process, same directory."""
    return f"{path}.{os.getpid()}{TMP_SUFFIX}"


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb", **open_kwargs):
    """`with atomic_write(p) as f: f.write(...)`: `p` appears (or is replaced) only when the block
    completes; on any error the temporary is removed and `p` is untouched."""
    path = os.fspath(path)
    tmp = temp_name(path)
    try:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_save(obj, path: str):
    """torch.save through atomic_write."""
    import torch

    with atomic_write(path) as f:
        torch.save(obj, f)


def remove_stale_temps(path: str) -> list:
    """Remove the temporaries that killed writers left beside `path` (a file) or inside it (a
    directory); returns what was removed. Call it before a run writes there again."""
    pattern = os.path.join(path, "*" + TMP_SUFFIX) if os.path.isdir(path) else f"{glob.escape(path)}.*{TMP_SUFFIX}"
    removed = []
    for tmp in glob.glob(pattern):
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
            removed.append(tmp)
    return removed


def download(url: str, dest: str, sha256: str = None) -> str:
    """Fetch `url` to `dest` with a progress bar. With `sha256` the bytes are checked before the
    file appears under its name: a wrong hash or an interrupted download leaves nothing behind."""
    from tqdm import tqdm

    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url) as source, atomic_write(dest) as out:
            total = int(source.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=os.path.basename(dest),
                      file=sys.stderr, disable=None) as bar:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            if sha256 is not None and digest.hexdigest() != sha256:
                raise DownloadError(
                    f"{url}: SHA256 is {digest.hexdigest()}, expected {sha256}; the download is corrupt, not saved"
                )
    except DownloadError:
        raise
    except OSError as e:
        raise DownloadError(f"{url}: download failed ({e})") from None
    return dest


@contextlib.contextmanager
def atomic_directory(path: str, replace: bool = False):
    """`with atomic_directory(d) as tmp:` write files into tmp; `d` appears (or, with replace,
    replaces the old one) only when the block completes. On any error tmp is removed and `d` is
    untouched. The swap of an existing `d` is two renames: a crash between them leaves the old
    directory beside it under a .old name, never a half-written `d`."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(path) + ".", suffix=TMP_SUFFIX, dir=parent)
    old = None
    try:
        yield tmp
        if os.path.lexists(path):
            if not replace:
                raise FileExistsError(f"{path}: already exists")
            old = tempfile.mkdtemp(prefix=os.path.basename(path) + ".", suffix=".old", dir=parent)
            if os.path.isdir(path) and not os.path.islink(path):
                os.replace(path, os.path.join(old, "previous"))
            else:
                os.remove(path)
        # mkdtemp makes the directory 0700 and safetensors its file 0600: give them the modes any
        # file written here gets, or the model would be hidden from other users
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        for name in os.listdir(tmp):
            os.chmod(os.path.join(tmp, name), 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
