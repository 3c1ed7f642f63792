"""``kiosk-central manage import_reference_photos FOLDER [--prune]``: reference photos for the review page, one
``<nip>.jpg`` (or ``.jpeg``, ``.png``) per person: what ``kiosk enroll --reference-photos FOLDER`` writes (the face,
upright, at most 400 px: docs/enrolment.md). Anything else in the folder (a HEIC or WebP phone photo, a folder of
photos, a file not named by a NIP) is skipped and named with what to do. ``--prune`` deletes the reference photos of
NIPs no longer in the folder (a person removed from enrolment, UU 27/2022)."""

from __future__ import annotations

import getpass
import hashlib
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kiosk_central.hr import accounts
from kiosk_central.hr.models import ReferencePhoto
from kiosk_contract.nip import NipError, parse_nip

TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
MAX_BYTES = 5_000_000


class Command(BaseCommand):
    help = "Import enrolment photos (<nip>.jpg) as the reviewers' reference photos."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("folder", type=Path)
        parser.add_argument("--prune", action="store_true", help="delete photos of NIPs not in the folder")

    def handle(self, *args: Any, folder: Path, prune: bool, **options: Any) -> None:
        if not folder.is_dir():
            raise CommandError(f"{folder}: not a folder")
        seen: set[str] = set()
        added = skipped = 0
        for path in sorted(folder.iterdir()):
            kind = TYPES.get(path.suffix.lower())
            if path.name.startswith("."):
                continue
            if kind is None or not path.is_file():
                self.stderr.write(f"skipped {path.name}{'/' if path.is_dir() else ''}: not a <nip>.jpg or .png; "
                                  f"write the reference photos with `kiosk enroll --reference-photos {folder}`")
                skipped += 1
                continue
            try:
                nip = parse_nip(path.stem, str(path.name))
            except NipError as exc:
                self.stderr.write(f"skipped {path.name}: {exc}")
                skipped += 1
                continue
            blob = path.read_bytes()
            if len(blob) > MAX_BYTES or not (blob.startswith(b"\xff\xd8") or blob.startswith(b"\x89PNG")):
                self.stderr.write(f"skipped {path.name}: not a JPEG or PNG of at most {MAX_BYTES} bytes")
                skipped += 1
                continue
            seen.add(nip)
            ReferencePhoto.objects.update_or_create(nip=nip, defaults={
                "jpeg": blob, "content_type": kind, "sha256": hashlib.sha256(blob).hexdigest(), "source": path.name})
            added += 1
        removed = 0
        if prune:
            removed, _ = ReferencePhoto.objects.exclude(nip__in=seen).delete()
        accounts.audit(f"{getpass.getuser()} (cli)", "cli", "reference_photos", str(folder),
                       f"imported={added} skipped={skipped} removed={removed}")
        self.stdout.write(f"reference photos: {added} imported, {skipped} skipped, {removed} removed")
