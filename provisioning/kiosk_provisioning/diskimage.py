"""Read and write a Raspberry Pi OS disk image without mounting it: MBR, FAT boot partition, ext4 root.

The FAT partition goes through mtools (``-i IMAGE@@OFFSET``), the ext4 partition through e2fsprogs' ``debugfs``
(``IMAGE?offset=N``); neither needs root or a loop device.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kiosk_provisioning import ProvisionError

SECTOR = 512
_FAT_TYPES = {0x0B, 0x0C, 0x0E, 0x06}
_LINUX_TYPE = 0x83
_TOOLS = {"mtools": "mcopy", "e2fsprogs": "debugfs"}


def require_tools() -> None:
    """Refuse early, naming the Debian package, when mtools or debugfs is missing."""
    missing = [pkg for pkg, tool in _TOOLS.items() if _which(tool) is None]
    if missing:
        raise ProvisionError(
            f"the image tools are missing: install them with `sudo apt-get install {' '.join(missing)}`"
        )


def _which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


@dataclass(frozen=True)
class Partition:
    """One primary partition of the MBR: its type byte, first byte and length in bytes."""

    number: int
    type_id: int
    offset: int
    size: int


def read_partitions(image: Path) -> tuple[Partition, Partition]:
    """The (boot, root) partitions of a Raspberry Pi OS image; ProvisionError if it is not such an image."""
    try:
        with image.open("rb") as fh:
            mbr = fh.read(SECTOR)
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        raise ProvisionError(f"{image}: the image file does not exist") from None
    except IsADirectoryError:
        raise ProvisionError(f"{image}: is a folder; give the .img (or .img.xz) file") from None
    except OSError as exc:
        raise ProvisionError(f"{image}: cannot read the image ({exc.strerror})") from None
    hint = "not a disk image; give the Raspberry Pi OS Lite .img (or .img.xz) as downloaded"
    if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa":
        raise ProvisionError(f"{image}: {hint} (no MBR partition table)")
    parts = []
    for i in range(4):
        entry = mbr[446 + 16 * i : 462 + 16 * i]
        type_id = entry[4]
        start, count = struct.unpack_from("<II", entry, 8)
        if type_id and count:
            parts.append(Partition(i + 1, type_id, start * SECTOR, count * SECTOR))
    if any(p.type_id == 0xEE for p in parts):
        raise ProvisionError(f"{image}: has a GPT partition table; Raspberry Pi OS images use MBR ({hint})")
    found = ", ".join(f"partition {p.number} type 0x{p.type_id:02x}" for p in parts) or "no partitions"
    if len(parts) != 2 or parts[0].type_id not in _FAT_TYPES or parts[1].type_id != _LINUX_TYPE:
        raise ProvisionError(
            f"{image}: expected a FAT boot partition and a Linux root partition (Raspberry Pi OS layout), found {found}"
        )
    for p in parts:
        if p.offset + p.size > size:
            raise ProvisionError(
                f"{image}: partition {p.number} ends at byte {p.offset + p.size} but the file has {size} bytes "
                "(truncated download? check its SHA-256)"
            )
    return parts[0], parts[1]


def _run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    """Run one of the image tools, capturing its output (no pager, no mtools geometry check)."""
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1", DEBUGFS_PAGER="__none__", PAGER="__none__")
    tool = _which(argv[0]) or argv[0]
    return subprocess.run([tool, *argv[1:]], capture_output=True, env=env, check=False)


class FatPartition:
    """The FAT boot partition of an image, through mtools."""

    def __init__(self, image: Path, part: Partition) -> None:
        self.image = image
        self.spec = f"{image}@@{part.offset}"

    def read(self, path: str) -> bytes | None:
        """The bytes of ``path`` (like ``/cmdline.txt``), or None when it does not exist."""
        proc = _run(["mtype", "-i", self.spec, "::" + path])
        if proc.returncode != 0:
            if b"not found" in proc.stderr.lower():
                return None
            raise ProvisionError(f"{self.image}: cannot read {path} from the boot partition: {_text(proc.stderr)}")
        return proc.stdout

    def exists(self, path: str) -> bool:
        return _run(["mdir", "-b", "-i", self.spec, "::" + path]).returncode == 0

    def mkdir(self, path: str) -> None:
        if not self.exists(path):
            self._check(_run(["mmd", "-i", self.spec, "::" + path]), f"create folder {path}")

    def write(self, path: str, data: bytes) -> None:
        """Write (or replace) one file; the bytes pass through a 0600 file in a private temporary folder."""
        with tempfile.TemporaryDirectory(prefix="kiosk-fat-") as tmp:
            src = Path(tmp) / "data"
            src.touch(mode=0o600)
            src.write_bytes(data)
            self._check(_run(["mcopy", "-o", "-i", self.spec, str(src), "::" + path]), f"write {path}")

    def _check(self, proc: subprocess.CompletedProcess[bytes], action: str) -> None:
        if proc.returncode != 0:
            raise ProvisionError(f"{self.image}: cannot {action} on the boot partition: {_text(proc.stderr)}")


@dataclass(frozen=True)
class Inode:
    """What ``debugfs stat`` says about a path: its type (``regular``, ``directory``, ``symlink``) and link target."""

    kind: str
    link: str | None


@dataclass(frozen=True)
class Node:
    """One thing to create in the ext4 root: a file (``data``), a folder (neither) or a symlink (``link``)."""

    path: str
    mode: int = 0o644
    data: bytes | None = None
    source: Path | None = None
    link: str | None = None
    uid: int = 0
    gid: int = 0


class Ext4Partition:
    """The ext4 root partition of an image, through debugfs."""

    _TYPE_RE = re.compile(r"Type:\s+(\S+)")

    def __init__(self, image: Path, part: Partition) -> None:
        self.image = image
        self.spec = f"{image}?offset={part.offset}"

    def _debugfs(self, request: str) -> subprocess.CompletedProcess[bytes]:
        return _run(["debugfs", "-R", request, self.spec])

    def stat(self, path: str) -> Inode | None:
        """The inode at ``path`` (a last-component symlink is not followed), or None when there is none."""
        proc = self._debugfs(f'stat "{path}"')
        out = proc.stdout.decode("utf-8", "replace")
        kind = self._TYPE_RE.search(out)
        if kind is None:
            err = _text(proc.stderr)
            if "not found" in err or "No such" in err:
                return None
            raise ProvisionError(f"{self.image}: cannot read the root filesystem ({err or 'not ext4?'})")
        link = None
        if kind.group(1) == "symlink":
            fast = re.search(r'Fast link dest: "(.*)"', out)
            link = fast.group(1) if fast else self._debugfs(f'cat "{path}"').stdout.decode("utf-8", "replace")
        return Inode(kind.group(1), link)

    def resolve(self, path: str) -> str | None:
        """``path`` with its last-component symlinks followed inside the image (None if it leads nowhere)."""
        current = PurePosixPath(path)
        for _ in range(16):
            inode = self.stat(str(current))
            if inode is None:
                return None
            if inode.link is None:
                return str(current)
            target = PurePosixPath(inode.link)
            current = target if target.is_absolute() else current.parent / target
            current = PurePosixPath(os.path.normpath(str(current)))
        raise ProvisionError(f"{self.image}: too many levels of symlinks at {path}")

    def read(self, path: str) -> bytes | None:
        """The contents of a regular file (following symlinks), or None when it does not exist."""
        real = self.resolve(path)
        if real is None:
            return None
        proc = self._debugfs(f'cat "{real}"')
        if proc.returncode != 0:
            raise ProvisionError(f"{self.image}: cannot read {path} from the root filesystem: {_text(proc.stderr)}")
        return proc.stdout

    def free_bytes(self) -> int:
        """Free space of the filesystem, from its superblock."""
        out = _run(["dumpe2fs", "-h", self.spec]).stdout.decode("utf-8", "replace")
        free = re.search(r"^Free blocks:\s+(\d+)", out, re.M)
        block = re.search(r"^Block size:\s+(\d+)", out, re.M)
        if not free or not block:
            raise ProvisionError(f"{self.image}: cannot read the root filesystem's superblock (is it ext4?)")
        return int(free.group(1)) * int(block.group(1))

    def write(self, nodes: list[Node]) -> None:
        """Create or replace every node (parents must exist or come earlier), with its mode and owner."""
        script: list[str] = []
        with tempfile.TemporaryDirectory(prefix="kiosk-ext4-") as tmp:
            for i, node in enumerate(nodes):
                _check_path(node.path)
                existing = self.stat(node.path)
                is_dir = node.data is None and node.source is None and node.link is None
                if existing is not None and (is_dir != (existing.kind == "directory")):
                    raise ProvisionError(
                        f"{self.image}: {node.path} is a {existing.kind} in the image; refusing to replace it"
                    )
                if is_dir:
                    if existing is None:
                        script.append(f'mkdir "{node.path}"')
                    file_type = 0o040000
                else:
                    if existing is not None:
                        script.append(f'rm "{node.path}"')
                    if node.link is not None:
                        script.append(f'symlink "{node.path}" "{node.link}"')
                        continue
                    # debugfs reads the bytes from a file with a plain name: a link to the source, or a copy of
                    # the data in a private temporary folder.
                    src = Path(tmp) / str(i)
                    if node.source is not None:
                        src.symlink_to(node.source.resolve())
                    else:
                        src.touch(mode=0o600)
                        src.write_bytes(node.data or b"")
                    script.append(f'write "{src}" "{node.path}"')
                    file_type = 0o100000
                script += [
                    f'sif "{node.path}" mode 0{file_type | node.mode:o}',
                    f'sif "{node.path}" uid {node.uid}',
                    f'sif "{node.path}" gid {node.gid}',
                ]
            if not script:
                return
            cmd_file = Path(tmp) / "commands"
            cmd_file.write_text("\n".join(script) + "\n")
            proc = _run(["debugfs", "-w", "-f", str(cmd_file), self.spec])
        errors = [line for line in _text(proc.stderr).splitlines() if not line.startswith("debugfs ")]
        if proc.returncode != 0 or errors:
            raise ProvisionError(f"{self.image}: writing the root filesystem failed: {'; '.join(errors)}")


def _check_path(path: str) -> None:
    if not path.startswith("/") or '"' in path or "\n" in path or " " in path:
        raise ProvisionError(f"internal: unsupported path in the image: {path!r}")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").strip()
