"""``python -m kiosk_provisioning``: the image script's command line (``provisioning/make-images`` calls it)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from kiosk_provisioning import ProvisionError
from kiosk_provisioning.credentials import load_authority, read_passphrase
from kiosk_provisioning.images import DEFAULT_NTP, Options, make_images
from kiosk_provisioning.revoke import revoke
from kiosk_provisioning.wheelhouse import MACHINES, RELEASES, check_wheelhouse, write_requirements


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make-images", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    images = sub.add_parser("images", help="make one ready image per device (see docs/provisioning.md)")
    images.add_argument("--image", type=Path, required=True, help="Raspberry Pi OS Lite 64-bit .img or .img.xz")
    images.add_argument("--devices", type=Path, required=True, help="the device list (CSV)")
    images.add_argument("--gallery", type=Path, required=True, help="the enrolled gallery (.kgal)")
    images.add_argument("--ca-dir", type=Path, required=True, help="folder with ca.crt, ca.key [, central.pub]")
    images.add_argument("--wheelhouse", type=Path, required=True, help="made by provisioning/download-wheelhouse")
    images.add_argument("--out", type=Path, required=True, help="output folder (base/, devices/<id>/)")
    images.add_argument("--timezone", default="Asia/Makassar", help="for rows without one (default Asia/Makassar)")
    images.add_argument("--ntp", nargs="+", default=list(DEFAULT_NTP), metavar="SERVER", help="NTP servers")
    images.add_argument("--wifi-country", default="ID", help="Wi-Fi regulatory country (default ID)")
    images.add_argument("--config-template", type=Path, help="kiosk.toml to start from (default examples/kiosk.toml)")
    images.add_argument("--service-unit", type=Path, help="kiosk.service (default systemd/kiosk.service)")
    images.add_argument("--userconf", type=Path, help="userconf.txt (USER:HASH) for the admin account")
    images.add_argument("--ssh", action="store_true", help="enable SSH on the devices")
    images.add_argument("--cert-days", type=int, default=1825, help="MQTT certificate validity (default 1825)")
    images.add_argument("--ca-passphrase-file", type=Path, help="file holding the CA key's passphrase")
    images.add_argument("--dry-run", action="store_true", help="check everything, list what would be written")
    images.add_argument("--liveness-models", type=Path, help="the MiniFASNet folder: installed as the texture cue")
    images.add_argument("--selftest-clip", type=Path, help="a walk-up recorded with the office's camera, with the "
                        "people's consent: installed (root only) as the clip of `kiosk selftest`'s benchmark")
    images.add_argument("--machine", choices=MACHINES, default="aarch64",
                        help="the image's machine: aarch64 (a Pi); x86_64 only for scripts/boot-test")
    rev = sub.add_parser("revoke", help="revoke stolen or lost kiosks: a CRL for the broker, key ids for central")
    rev.add_argument("--ca-dir", type=Path, required=True, help="folder with ca.crt and ca.key")
    rev.add_argument("--out", type=Path, required=True, help="the output folder the devices' images were made in")
    rev.add_argument("--ca-passphrase-file", type=Path, help="file holding the CA key's passphrase")
    rev.add_argument("devices", nargs="*", metavar="DEVICE_ID", help="none: only sign a fresh CRL")
    wheels = sub.add_parser("check-wheelhouse", help="check that a wheelhouse installs the kiosk offline")
    wheels.add_argument("folder", type=Path)
    wheels.add_argument("--os", choices=sorted(RELEASES), default="bookworm")
    wheels.add_argument("--machine", choices=MACHINES, default="aarch64")
    lock = sub.add_parser(
        "write-requirements", help="write a wheelhouse's requirements.txt from the device lock (download-wheelhouse)"
    )
    lock.add_argument("folder", type=Path)
    lock.add_argument("--lock", type=Path, required=True, help="locks/device-<release>.txt")
    lock.add_argument("--os", choices=sorted(RELEASES), default="bookworm")
    lock.add_argument("--machine", choices=MACHINES, default="aarch64")
    args = parser.parse_args(argv)
    try:
        if args.command == "check-wheelhouse":
            found = [f for f in check_wheelhouse(args.folder, RELEASES[args.os], args.machine) if f.suffix == ".whl"]
            print(
                f"OK: {args.folder}: {len(found)} wheels, exactly its requirements.txt, install the kiosk on "
                f"Raspberry Pi OS {args.os} ({args.machine})"
            )
            return 0
        if args.command == "write-requirements":
            written, removed = write_requirements(args.folder, args.lock, args.os, args.machine)
            for name in removed:
                print(f"removed {name}: not in {args.lock}")
            print(f"wrote {written}")
            return 0
        if args.command == "revoke":
            authority = load_authority(args.ca_dir, read_passphrase(args.ca_passphrase_file), images=False)
            for line in revoke(args.out, authority, args.devices):
                print(line)
            return 0
        defaults = Options(Path(), Path(), Path(), Path(), Path(), Path())
        opts = Options(
            image=args.image,
            devices=args.devices,
            gallery=args.gallery,
            ca_dir=args.ca_dir,
            wheelhouse=args.wheelhouse,
            out=args.out,
            timezone=args.timezone,
            ntp=tuple(args.ntp),
            wifi_country=args.wifi_country,
            config_template=args.config_template or defaults.config_template,
            service_unit=args.service_unit or defaults.service_unit,
            userconf=args.userconf,
            ssh=args.ssh,
            cert_days=args.cert_days,
            ca_passphrase_file=args.ca_passphrase_file,
            dry_run=args.dry_run,
            liveness_models=args.liveness_models,
            selftest_clip=args.selftest_clip,
            machine=args.machine,
        )
        return make_images(opts)
    except ProvisionError as exc:
        print(f"make-images: ERROR: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
