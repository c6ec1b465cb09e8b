"""Output folders: replace one only when it is ours, build the new one beside it, swap it in whole.

Every writer of a whole output folder (the training output, the service folder, a run's stage
folder) follows the same steps:

1. :func:`check_replaceable`: an existing folder is replaced only when it is recognisably ours
   (a marker file such as ``model_metadata.json`` is in it); anything else is refused with a
   one-line :class:`OutputFolderError` and left untouched.
2. :func:`output_lock`: ``.NAME.tinyforge.lock`` beside the target, held with ``flock`` for the
   whole run, so a second run into the same folder is refused while the first works. The kernel
   drops the lock when its holder dies (even ``kill -9``), so it never stays stuck.
3. :func:`remove_leftovers`: staging folders of dead processes (``.NAME.tinyforge-PID-*``)
   are removed; a live process's never are.
4. :func:`new_staging` + :func:`swap_in`: the new folder is built beside the target, renamed in
   (the old one renamed aside first, then deleted); any failure puts the old one back as it was.

:func:`locked_output` is steps 2 and 3 together, and :func:`staging_folder` step 4 as a ``with``
block that removes the staging folder however the block ends unless it was swapped in.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import secrets
import shutil
import socket
import stat
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = [
    "OutputFolderError",
    "OutputInUseError",
    "check_replaceable",
    "OWNED_LIST",
    "current_umask",
    "discard",
    "lock_path",
    "locked_output",
    "new_staging",
    "normalize_modes",
    "output_lock",
    "pid_alive",
    "remove_leftovers",
    "staging_folder",
    "swap_in",
    "write_owned_list",
]

LOCK_SUFFIX = ".tinyforge.lock"
_TAG = "tinyforge"
# Files an OS drops into any folder a user browses: never a reason to refuse a replacement.
OS_JUNK = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
# Every file and folder a writer put in its output, recorded in the output itself: a later
# replacement removes nothing that is not on this list (a user's .env, certs/, src/ ...).
OWNED_LIST = ".tinyforge-files.json"
# Written by Python when the service's own modules run: ours to remove, though not on the list.
_REGENERATED = ("__pycache__",)


class OutputFolderError(ValueError):
    """The output folder cannot be written: it is not ours to replace (the message says why)."""


class OutputInUseError(OutputFolderError):
    """Another run holds the output folder's lock."""


# --------------------------------------------------------------------------- ownership


def check_replaceable(
    target: Path,
    markers: Iterable[str],
    what: str,
    allowed: Iterable[str] | None = None,
) -> None:
    """Raise :class:`OutputFolderError` unless ``target`` may be replaced whole.

    Absent or empty: fine. Otherwise it must hold one of ``markers`` (what makes it ours) and
    nothing we did not write: when it holds :data:`OWNED_LIST`, every file and folder in it must
    be on that list; a folder written before the list existed may hold only the ``allowed``
    top-level names (when given). The current folder, or a folder that contains it, is never
    replaced.
    """
    target = Path(target)
    if not target.exists() and not target.is_symlink():
        return
    if not target.is_dir():
        raise OutputFolderError(f"output path {target} exists and is not a folder")
    entries = sorted(p.name for p in target.iterdir())
    if entries:
        markers = list(markers)
        if not any((target / name).is_file() for name in markers):
            raise OutputFolderError(
                f"refusing to replace {target}: it is not a TinyForge {what} (no {' or '.join(markers)} in it); "
                "choose a new or empty folder"
            )
        if (target / OWNED_LIST).is_file() or (target / OWNED_LIST).is_symlink():
            foreign = _not_on_owned_list(target)
        elif allowed is not None:
            known = set(allowed) | OS_JUNK | set(_REGENERATED)
            foreign = [name for name in entries if name not in known]
        else:
            foreign = []
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise OutputFolderError(
                f"refusing to replace {target}: it holds {shown}, which TinyForge did not write; "
                "move them out or choose another folder"
            )
    cwd = _cwd()
    resolved = target.resolve()
    if cwd is not None and (cwd == resolved or resolved in cwd.parents):
        raise OutputFolderError(
            f"refusing to replace {target}: it is the current folder (or contains it); run from outside it"
        )


def write_owned_list(folder: Path) -> None:
    """Record every file and folder under ``folder`` in its :data:`OWNED_LIST` (call it last)."""
    folder = Path(folder)
    owned = sorted(_relative_entries(folder) | {OWNED_LIST})
    _write_new_file(folder / OWNED_LIST, json.dumps({"written_by": "TinyForge", "entries": owned}, indent=1) + "\n")


def _not_on_owned_list(target: Path) -> list[str]:
    """The entries of ``target`` missing from its owned list (all of them when the list is unreadable)."""
    list_path = target / OWNED_LIST
    try:
        if list_path.is_symlink():
            raise ValueError("a link")
        owned = set(json.loads(list_path.read_text(encoding="utf-8"))["entries"])
    except (OSError, ValueError, KeyError, TypeError):
        return [f"{OWNED_LIST} (unreadable)"]
    return sorted(
        rel for rel in _relative_entries(target)
        if rel not in owned and not set(Path(rel).parts) & set(_REGENERATED) and Path(rel).name not in OS_JUNK
    )


def _relative_entries(folder: Path) -> set[str]:
    """Every file, link and folder below ``folder`` as a POSIX path relative to it (links not followed)."""
    found: set[str] = set()
    for root, dirs, files in os.walk(folder):
        base = Path(root).relative_to(folder)
        found.update((base / name).as_posix() for name in (*dirs, *files))
    return found


def _write_new_file(path: Path, text: str) -> None:
    """Create ``path`` (never through a link, never over an existing file) holding ``text``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _cwd() -> Path | None:
    try:
        return Path.cwd().resolve()
    except OSError:  # the current folder was deleted
        return None


# --------------------------------------------------------------------------- lock


def lock_path(target: Path) -> Path:
    """``.NAME.tinyforge.lock`` beside ``target``."""
    target = Path(target).absolute()
    return target.parent / f".{target.name}{LOCK_SUFFIX}"


@contextlib.contextmanager
def output_lock(target: Path) -> Iterator[Path]:
    """Hold the lock of ``target`` (creating its parent folder) or raise :class:`OutputInUseError`.

    The lock file holds the holder's pid, host and start time (for the message) and is removed
    on release. It is an advisory ``flock`` (``msvcrt.locking`` on Windows), so a crashed
    holder's lock is free again at once; a leftover file is simply reused.
    """
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, target)
    try:
        yield path
    finally:
        # Unlink while still holding the lock, so a waiting opener of this inode sees it gone.
        with contextlib.suppress(OSError):
            path.unlink()
        _release(fd)


@contextlib.contextmanager
def locked_output(target: Path) -> Iterator[Path]:
    """Hold ``target``'s lock (see :func:`output_lock`) with dead runs' leftovers beside it removed."""
    with output_lock(target) as lock:
        remove_leftovers(target)
        yield lock


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _acquire(path: Path, target: Path) -> int:
    for _ in range(20):  # the file can be removed between open and lock by the previous holder
        fd = _open_lock_file(path)
        try:
            if not _try_lock(fd):
                holder = _read_holder(fd)
                raise OutputInUseError(
                    f"{target} is in use by another TinyForge run{holder}: wait for it to finish "
                    "or choose another folder"
                )
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                info = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                try:
                    os.ftruncate(fd, 0)
                    os.write(fd, info.encode("utf-8"))
                except OSError as exc:  # a full disk: no empty lock file left behind, and its name said
                    with contextlib.suppress(OSError):
                        path.unlink()
                    raise OSError(exc.errno, f"{exc.strerror} (writing the lock file {path})", str(path)) from exc
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise OutputInUseError(f"{target} is in use by another TinyForge run: wait for it to finish")


def _open_lock_file(path: Path) -> int:
    """Open (or create) the lock file without following a link: a link planted where our lock
    goes would make us overwrite whatever it points to."""
    if path.is_symlink():
        raise OutputFolderError(f"refusing to use the lock file {path}: it is a symbolic link; remove it")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link appeared between the check and the open
            raise OutputFolderError(f"refusing to use the lock file {path}: it is a symbolic link; remove it") from exc
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutputFolderError(f"refusing to use the lock file {path}: it is not a regular file; remove it")
    return fd


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 200).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return f" ({text})" if text else ""


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - Windows only
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _release(fd: int) -> None:
    try:
        if sys.platform == "win32":  # pragma: no cover - Windows only
            import msvcrt

            os.lseek(fd, 0, os.SEEK_SET)
            with contextlib.suppress(OSError):
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    finally:
        os.close(fd)  # closing drops a flock


# --------------------------------------------------------------------------- staging


def new_staging(target: Path, tag: str | None = None) -> Path:
    """Create ``.NAME.tinyforge-PID-RANDOM.partial`` beside ``target`` (the usual folder mode).

    ``tag`` replaces the random part: ranks of one torchrun job share ``tag`` and the pid of
    their launcher, so they build in the same folder.
    """
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    if tag is not None:
        path = target.parent / f".{target.name}.{_TAG}-{os.getppid()}-{_clean(tag)}.partial"
        path.mkdir(exist_ok=True)
        return path
    while True:
        path = _sibling(target, "partial")
        try:
            path.mkdir()  # not mkdtemp: its 0700 would become the output folder's mode
        except FileExistsError:
            continue
        return path


def _sibling(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{_TAG}-{os.getpid()}-{secrets.token_hex(4)}.{kind}"


def _clean(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", tag)[:40] or "x"


def swap_in(staging: Path, target: Path) -> None:
    """Put the finished ``staging`` folder at ``target``; an old ``target`` is replaced whole.

    The old folder is renamed aside, the new one renamed in, then the old one deleted; when the
    second rename fails the old folder is renamed back, so ``target`` is as it was. File modes
    are set to the usual ones first (0644 files, 0755 folders under umask 022).
    """
    target = Path(target).absolute()
    normalize_modes(staging)
    if not target.exists() and not target.is_symlink():
        os.rename(staging, target)
        return
    old = _sibling(target, "old")
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old, target)
        raise
    discard(old)


@contextlib.contextmanager
def staging_folder(target: Path, tag: str | None = None, owner: bool = True) -> Iterator[Path]:
    """A new staging folder beside ``target`` (see :func:`new_staging`) for the ``with`` block.

    The block publishes it with :func:`swap_in`; whatever is left of it when the block ends
    (failed, cancelled, or not published) is removed. ``owner=False``: a torchrun rank that
    shares the folder with rank 0, which alone removes it.
    """
    folder = new_staging(target, tag)
    try:
        yield folder
    finally:
        if owner:
            discard(folder)


def discard(path: Path) -> None:
    """Remove a folder (or file, or link) we built, if it is there; never raises."""
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(OSError):
            path.unlink()
        return
    shutil.rmtree(path, ignore_errors=True)


_LEFTOVER = re.compile(rf"\.{_TAG}-(\d+)-[A-Za-z0-9]+\.(partial|old)$")


def remove_leftovers(target: Path) -> list[Path]:
    """Remove staging folders beside ``target`` whose process is dead; return what was removed.

    Call it while holding ``target``'s lock. A folder of a live process is never touched. A
    process killed inside :func:`swap_in` between its two renames left the old output aside
    and no ``target``: that old output is renamed back instead of removed.
    """
    target = Path(target).absolute()
    prefix = f".{target.name}."
    dead: list[tuple[str, Path]] = []
    try:
        siblings = sorted(target.parent.iterdir(), key=lambda p: p.name)
    except OSError:
        return []
    for path in siblings:
        if not path.name.startswith(prefix):
            continue
        match = _LEFTOVER.fullmatch(path.name[len(prefix) - 1 :])
        if match is not None and not pid_alive(int(match.group(1))):
            dead.append((match.group(2), path))
    removed: list[Path] = []
    for kind, path in sorted(dead, key=lambda item: item[0] != "old"):
        if kind == "old" and not target.exists() and not target.is_symlink():
            logger.warning("restoring %s from %s (a run was killed while replacing it)", target, path.name)
            os.rename(path, target)
            continue
        logger.info("removing %s, left by a process that is no longer running", path)
        discard(path)
        removed.append(path)
    return removed


def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists on this machine (unknown counts as alive)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # pragma: no cover - Windows only
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, as another user
        return True
    return True


def _windows_pid_alive(pid: int) -> bool:  # pragma: no cover - Windows only
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() == 5  # access denied: it exists
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


# --------------------------------------------------------------------------- modes


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it (briefly)
    os.umask(mask)
    return mask


def normalize_modes(folder: Path) -> None:
    """Give every file and folder under ``folder`` the mode a plain ``open``/``mkdir`` would.

    Some writers (``mkstemp``, ``mkdtemp``, safetensors) create 0600/0700 entries, so a service
    copied into a container running as another user could not read its own files.
    """
    mask = current_umask()
    file_mode, exec_mode = 0o666 & ~mask, 0o777 & ~mask
    for root, _dirs, files in os.walk(folder):
        _chmod(Path(root), exec_mode)
        for name in files:
            path = Path(root) / name
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode):
                _chmod(path, exec_mode if mode & 0o111 else file_mode)


def _chmod(path: Path, mode: int) -> None:
    try:
        if stat.S_IMODE(path.lstat().st_mode) != mode:
            path.chmod(mode)
    except OSError as exc:  # a file we cannot chmod is still a file we wrote: keep going
        logger.debug("could not set the mode of %s: %s", path, exc)
