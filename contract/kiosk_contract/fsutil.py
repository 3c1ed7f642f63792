"""Durable file writes shared by the gallery and the outbox."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` survive power loss."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` so that a crash leaves the old file or the new one, never half of either.

    Writes a temporary neighbour, fsyncs it, renames it over ``path`` and fsyncs the folder; on an error the
    temporary file is removed and the error (for example ENOSPC) is raised with ``path`` untouched. Written by root
    into a folder another user owns (IT sealing a gallery into the kiosk's /var/lib/kiosk), the file is given to
    that folder's owner, readable by it only, before it appears, so the service can read it.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            folder = os.stat(path.parent)
            if os.geteuid() == 0 and folder.st_uid != 0:
                os.fchown(fh.fileno(), folder.st_uid, folder.st_gid)
                os.fchmod(fh.fileno(), 0o600)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def free_bytes(folder: Path) -> int:
    """Bytes free for this (unprivileged) user on the filesystem holding ``folder``."""
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize
