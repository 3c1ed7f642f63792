"""The ``kiosk`` command line: run, config check, enroll, identify, replay, gallery.

Exit status: 0 success; 1 some inputs were rejected (photos, images); 2 bad usage, config or gallery.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from kiosk import __version__
from kiosk.config import KIOSK_CONFIG, KIOSK_UNIT, KioskConfig, RecognizerConfig, check_command, load_config
from kiosk.errors import KioskError
from kiosk.logs import setup_logging
from kiosk_contract.runtime import stop_on_signals
from kiosk_contract.settings import use_unit_credentials

if TYPE_CHECKING:
    from kiosk.recognizer.enroll import Enrolment, Finding
    from kiosk_contract.gallery import Gallery
    from kiosk_contract.sealing import DataCipher

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    # One BLAS thread: matching is a small matrix-vector product, and extra threads only wait on cores that
    # dlib keeps busy (bench/gallery_scale.py measured 0.27 ms with one thread, 12 ms with the default).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    parser = _parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    # IT's tools on a device (seal, enroll, selftest, run as root) read the keys the unit's LoadCredential= names;
    # the daemon itself only from systemd ($CREDENTIALS_DIRECTORY).
    use_unit_credentials(None if args.command == "run" else KIOSK_UNIT)
    try:
        return int(args.func(args))
    except KioskError as exc:
        print(f"kiosk: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kiosk", description="Face-recognition attendance kiosk.")
    p.add_argument("--version", action="version", version=f"kiosk {__version__}")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the kiosk daemon")
    run.add_argument(
        "--config", type=Path, required=True, help="the kiosk.toml (on the device /etc/kiosk/kiosk.toml)"
    )
    run.set_defaults(func=_cmd_run)

    shots = sub.add_parser("screens", help="render every terminal screen at each supported size to PNG files")
    shots.add_argument("--out", type=Path, required=True, help="folder for <screen>-<w>x<h>.png")
    shots.add_argument("--language", default="id", choices=["id", "en"])
    shots.add_argument("--size", action="append", type=_size, help="WxH, e.g. 800x480 (repeatable; default: all)")
    shots.set_defaults(func=_cmd_screens)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a config file and report every problem")
    check.add_argument("file", type=Path)
    check.set_defaults(func=lambda a: check_command(a.file))

    enroll = sub.add_parser(
        "enroll",
        help="enrol people from a roster and their photos",
        description="Check every roster row and photo in one run, report every problem, and enrol the people "
        "when nothing is wrong (docs/enrolment.md).",
    )
    enroll.add_argument(
        "--roster", type=Path, required=True,
        help="HR's export: CSV (',' ';' or tab; UTF-8 or Windows-1252) or xlsx; columns NIP, Nama, Unit kerja",
    )
    enroll.add_argument("--sheet", help="the xlsx sheet of the roster (default: the first)")
    enroll.add_argument(
        "--photos", type=Path, required=True,
        help="DIR/<nip>.jpg or DIR/<nip>/*: JPEG, PNG, WebP, HEIC, BMP, TIFF, with any or no extension",
    )
    enroll.add_argument("--gallery", type=Path, required=True, help="gallery file to create or update")
    enroll.add_argument("--jitters", type=int, default=5, help="augmented copies averaged per template")
    enroll.add_argument(
        "--allow-similar",
        action="store_true",
        help="enrol people who look like someone already enrolled (twins), instead of flagging",
    )
    enroll.add_argument("--dry-run", action="store_true", help="check everything and write nothing")
    enroll.add_argument(
        "--partial", action="store_true",
        help="enrol the people who are ready even when others have problems (else nothing is written)",
    )
    enroll.add_argument("--report", type=Path, help="also write every problem to this CSV file (for Excel)")
    enroll.add_argument("--reference-photos", type=Path, metavar="DIR", help="also write <nip>.jpg of each person "
                        "enrolled (the face, upright, at most 400 px) for central's reviewers "
                        "(kiosk-central manage import_reference_photos DIR)")
    enroll.add_argument("--json", action="store_true", help="JSON lines (people, problems, summary) instead of text")
    _add_config(enroll)
    enroll.set_defaults(func=_cmd_enroll)

    identify = sub.add_parser("identify", help="identify the faces in still images")
    identify.add_argument("--gallery", type=Path, required=True)
    identify.add_argument("--json", action="store_true", required=True, help="JSON lines (the only format)")
    identify.add_argument("images", nargs="+", type=Path)
    _add_config(identify)
    identify.set_defaults(func=_cmd_identify)

    rep = sub.add_parser("replay", help="run the whole pipeline on a clip or image folder")
    rep.add_argument("--gallery", type=Path, required=True)
    rep.add_argument("--source", type=Path, required=True, help="video file, GIF or image folder")
    rep.add_argument("--realtime", action="store_true", help="pace at the clip's rate, dropping late frames")
    rep.add_argument("--json", action="store_true", help="JSON lines (else readable text)")
    _add_config(rep)
    rep.set_defaults(func=_cmd_replay)

    gal = sub.add_parser("gallery", help="inspect or edit a gallery")
    gal_sub = gal.add_subparsers(dest="gallery_command", required=True)
    for name, helptext in (
        ("list", "one line per person"),
        ("show", "one person"),
        ("remove", "delete people"),
    ):
        g = gal_sub.add_parser(name, help=helptext)
        g.add_argument("--gallery", type=Path, required=True)
        if name != "list":
            g.add_argument("nips", nargs="+")
        _add_config(g)
        g.set_defaults(func=_cmd_gallery, gallery_command=name)
    seal = gal_sub.add_parser(
        "seal", help="encrypt a plaintext gallery with this device's data key (device.data_key)"
    )
    seal.add_argument("--config", type=Path, required=True, help="the device's kiosk.toml (data key, gallery key)")
    seal.add_argument("input", type=Path, help="the plaintext gallery (from `kiosk enroll` or central)")
    seal.add_argument("output", type=Path, help="the sealed gallery to write (replaced atomically)")
    seal.set_defaults(func=_cmd_gallery_seal)
    from kiosk import liveness_trial  # kiosk liveness evaluate

    liveness_trial.register(sub)

    test = sub.add_parser("selftest", help="check this device's camera, screen, GPIO, keys, clock, card, broker, "
                          "gallery and recognizer speed (docs/selftest.md); run it with the kiosk stopped")
    test.add_argument("--config", type=Path, default=KIOSK_CONFIG, help=f"the device's kiosk.toml ({KIOSK_CONFIG})")
    test.add_argument("--clip", type=Path, help="the recorded walk-up for the recognizer benchmark")
    test.add_argument("--json", type=Path, help="write the JSON report here (default: <state_dir>/selftest.json)")
    test.add_argument("--publish", action="store_true", help="store the summary as a status event for central")
    test.add_argument("--seconds", type=float, default=20.0, help="length of the recognizer benchmark")
    test.set_defaults(func=_cmd_selftest)
    return p


def _cmd_selftest(args: argparse.Namespace) -> int:
    from kiosk import selftest

    return selftest.command(load_config(args.config), clip=args.clip, json_out=args.json, publish_event=args.publish,
                            seconds=args.seconds)


def _size(text: str) -> tuple[int, int]:
    """``800x480`` -> (800, 480), for ``--size``."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 800x480") from None
    if not (320 <= w <= 7680 and 240 <= h <= 7680):
        raise argparse.ArgumentTypeError(f"{text!r}: width 320-7680 and height 240-7680, please")
    return w, h


def _cmd_screens(args: argparse.Namespace) -> int:
    """Screenshots of every screen from synthetic content (SDL's dummy driver: no display needed)."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    from kiosk.display.pygame_screen import DEFAULT_SIZES, screenshots

    report = screenshots(args.out, args.size or DEFAULT_SIZES, language=args.language)
    for path, problems in report.items():
        print(f"{path}: {'; '.join(problems) or 'ok'}")
    return EXIT_REJECTED if any(report.values()) else EXIT_OK


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        help="take recognizer settings (thresholds, geometry, gallery key) and the data key from here",
    )


def _recognizer(args: argparse.Namespace) -> RecognizerConfig:
    cfg = load_config(args.config, camera=False).recognizer if args.config else RecognizerConfig()
    return replace(cfg, gallery=args.gallery)


def _cmd_run(args: argparse.Namespace) -> int:
    from kiosk import app

    cfg: KioskConfig = load_config(args.config)
    with stop_on_signals() as stop:
        return app.run(cfg, stop)


def _cmd_enroll(args: argparse.Namespace) -> int:
    from kiosk.recognizer import enroll as enrolment
    from kiosk_contract.gallery import Gallery
    from kiosk_contract.roster import read_roster_file

    if args.jitters < 0:
        print("kiosk enroll: --jitters must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    if not args.photos.is_dir():
        print(f"kiosk enroll: photo folder {args.photos} does not exist", file=sys.stderr)
        return EXIT_USAGE
    if args.dry_run and args.partial:
        print("kiosk enroll: --dry-run writes nothing; --partial says what to write: use one", file=sys.stderr)
        return EXIT_USAGE
    cfg = _recognizer(args)
    key = cfg.gallery_key()
    cipher = _data_cipher(args)
    roster = read_roster_file(args.roster, sheet=args.sheet)
    photos = enrolment.index_photos(args.photos)
    # An existing gallery must load cleanly: a damaged one is reported, never overwritten.
    gallery = Gallery.load(args.gallery, key, cipher=cipher) if args.gallery.exists() else Gallery()
    if not args.json:
        files = sum(map(len, photos.by_nip.values()))
        print(f"roster {args.roster}: {'; '.join(roster.notes)}; {len(roster.rows)} rows ready, "
              f"{len(roster.problems)} problem(s)")
        print(f"photos {args.photos}: {files} file(s) for {len(photos.by_nip)} NIP(s)")
    run = enrolment.enroll(roster, photos, gallery, cfg, jitters=args.jitters, allow_similar=args.allow_similar,
                           progress=_progress_bar())
    findings = run.findings()
    if args.report:
        _write_enrol_report(args.report, findings)
    write = not args.dry_run and bool(run.ready) and (run.complete or args.partial)
    if write:
        gallery.save(args.gallery, key, cipher=cipher)
        if args.reference_photos is not None:
            try:
                references = enrolment.write_reference_photos(run, args.reference_photos)
            except OSError as exc:
                raise KioskError(f"{args.reference_photos}: cannot write the reference photos "
                                 f"({exc.strerror or exc})") from None
            if not args.json:
                print(f"reference photos: {references} written to {args.reference_photos}")
    summary = run.summary()
    if args.json:
        for r in run.people:
            print(json.dumps({
                "nip": r.nip, "name": r.name, "row": r.row, "status": r.status,
                "similar_to": None if r.similar_to is None
                else {"nip": r.similar_to[0], "distance": round(r.similar_to[1], 4)},
                "photos": [{"path": str(ph.path), "ok": ph.reason is None, "reason": ph.reason, "detail": ph.detail}
                           for ph in r.photos],
            }))
        for f in findings:
            print(json.dumps({"problem": asdict(f)}))
        print(json.dumps({"summary": summary | {"written": write, "gallery_version": gallery.version}}))
    else:
        _print_enrol_tables(findings, summary)
        print(_enrol_outcome(args, run, gallery, write))
    return EXIT_OK if run.complete else EXIT_REJECTED


ENROL_REPORT_HEADER = ("row", "NIP", "name", "file", "problem", "what to do")
ENROL_SUMMARY_LABELS = {  # the keys of Enrolment.summary(); refused_<reason> reads "photos refused: <reason>"
    "people": "people judged",
    "enrolled": "enrolled (new)",
    "updated": "updated",
    "flagged_same_face": "flagged: same face as someone else",
    "not_enrolled_no_usable_photo": "not enrolled: no usable photo",
    "without_photo": "without any photo",
    "held_roster_problem": "held back: a problem in the roster row",
    "roster_problems": "roster problems",
    "photos_ok": "photos used",
    "stray_files": "files of nobody",
}


def _enrol_report_rows(findings: list[Finding]) -> list[tuple[str, ...]]:
    return [(str(f.row or ""), f.nip, f.name, f.file, f.problem, f.detail) for f in findings]


def _write_enrol_report(path: Path, findings: list[Finding]) -> None:
    """The problems as CSV for Excel in an Indonesian locale (kiosk_contract.excelcsv), written atomically."""
    from kiosk_contract.excelcsv import excel_csv
    from kiosk_contract.fsutil import write_atomic

    try:
        write_atomic(path, excel_csv(ENROL_REPORT_HEADER, _enrol_report_rows(findings), nip_columns={1}))
    except OSError as exc:
        raise KioskError(f"{path}: cannot write the report ({exc.strerror or exc})") from None


def _print_enrol_tables(findings: list[Finding], summary: dict[str, int]) -> None:
    if not findings:
        print("\nno problem found")
    else:
        print(f"\n{len(findings)} problem(s), one per line:")
        rows = [ENROL_REPORT_HEADER, *_enrol_report_rows(findings)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(ENROL_REPORT_HEADER) - 1)]
        for r in rows:
            print("  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip())
    shown = {ENROL_SUMMARY_LABELS.get(k, f"photos refused: {k.removeprefix('refused_')}"): v
             for k, v in summary.items()}
    width = max(map(len, shown))
    print("\nsummary:")
    for label, value in shown.items():
        print(f"  {label.ljust(width)}  {value:>6}")


def _enrol_outcome(args: argparse.Namespace, run: Enrolment, gallery: Gallery, write: bool) -> str:
    ready = len(run.ready)
    if write:
        return f"gallery {args.gallery}: written, version {gallery.version}, {len(gallery)} people"
    if args.dry_run:
        return f"dry run: nothing written; {ready} people would be enrolled or updated"
    if not ready:
        return f"gallery {args.gallery}: nothing written, nobody is ready"
    return (f"gallery {args.gallery}: nothing written because of the problems above (fix them and run again, "
            f"or add --partial to enrol the {ready} people who are ready now)")


def _progress_bar() -> Callable[[int, int], None] | None:
    """A progress bar on stderr for long runs (only on a terminal)."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        filled = 30 * done // max(total, 1)
        end = "\n" if done == total else ""
        print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}", end=end, file=sys.stderr, flush=True)

    return show


def _cmd_identify(args: argparse.Namespace) -> int:
    from kiosk.errors import ImageError
    from kiosk.imageio import read_rgb
    from kiosk.recognizer import faces
    from kiosk.recognizer.matching import match
    from kiosk_contract.gallery import Gallery

    cfg = _recognizer(args)
    gallery = Gallery.load(args.gallery, cfg.gallery_key(), cipher=_data_cipher(args))
    status = EXIT_OK
    for image in args.images:
        try:
            rgb = read_rgb(image)
        except ImageError as exc:
            print(json.dumps({"image": str(image), "faces": [], "error": str(exc)}), flush=True)
            status = EXIT_REJECTED
            continue
        out = []
        # A still is one frame: the single-frame rule decides. Quality findings are reported, not enforced:
        # in video they make the kiosk wait for a better frame, and a still has no other frame.
        for obs in faces.analyze_still(rgb, cfg.quality, min_face_px=cfg.quality.min_face_px):
            assert obs.descriptor is not None
            m = match(gallery, obs.descriptor)
            out.append(
                {
                    "box": obs.box.as_list(),
                    "nip": m.accepted(cfg.decision),
                    "best_nip": m.best_nip,
                    "distance": round(m.distance, 4),
                    "margin": None if m.margin is None else round(m.margin, 4),
                    "quality": obs.problems,
                }
            )
        print(json.dumps({"image": str(image), "faces": out}), flush=True)
    return status


def _cmd_replay(args: argparse.Namespace) -> int:
    from kiosk import app
    from kiosk.camera.replay import ReplaySource
    from kiosk.recognizer.pipeline import Pipeline
    from kiosk_contract.gallery import Gallery

    cfg = _recognizer(args)
    gallery = Gallery.load(args.gallery, cfg.gallery_key(), cipher=_data_cipher(args))
    pipeline = Pipeline(gallery, cfg)
    cpu0, wall0 = time.process_time(), time.monotonic()

    def report(frame: object, result: object) -> None:
        for d in result.decisions:  # type: ignore[attr-defined]
            if args.json:
                print(json.dumps(d.as_json()), flush=True)
            else:
                who = gallery.get(d.nip).name if d.nip else "unknown"  # type: ignore[union-attr]
                print(
                    f"t={d.t:6.2f}s track {d.track}: {who} (distance {d.distance:.3f}, "
                    f"{d.frames_used} encodings, {d.latency_ms:.0f} ms)",
                    flush=True,
                )

    with ReplaySource(args.source, realtime=args.realtime, loop=False) as source:
        app.stream(source, pipeline, report, threading.Event())
        dropped = source.dropped
    cpu = time.process_time() - cpu0
    summary = asdict(pipeline.stats) | {
        "dropped": dropped,
        "detect_width": pipeline.detect_width,
        "min_face_px": pipeline.min_face_px,
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_frame": round(1000 * cpu / max(pipeline.stats.frames, 1), 2),
        "wall_s": round(time.monotonic() - wall0, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps({"summary": summary}) if args.json else f"summary: {summary}", flush=True)
    return EXIT_OK


def _data_cipher(args: argparse.Namespace) -> DataCipher | None:
    """The device data key's cipher from ``--config`` (None without one, or with device.data_key = "none")."""
    from kiosk import atrest

    return atrest.open_cipher(load_config(args.config, camera=False).device) if args.config else None


def _cmd_gallery(args: argparse.Namespace) -> int:
    from kiosk_contract.gallery import Gallery
    from kiosk_contract.nip import parse_nip

    cfg = _recognizer(args)
    key = cfg.gallery_key()
    cipher = _data_cipher(args)
    gallery = Gallery.load(args.gallery, key, cipher=cipher)
    if args.gallery_command != "list":
        args.nips = [parse_nip(nip, "NIP") for nip in args.nips]  # printed NIPs with spaces work too
    if args.gallery_command == "list":
        print(
            f"# gallery {args.gallery}: version {gallery.version}, model {gallery.model}, {len(gallery)} people"
        )
        for person in gallery.people:
            print(f"{person.nip}\t{person.name}\t{person.unit}\t{len(person.templates)} templates")
        return EXIT_OK
    if args.gallery_command == "show":
        status = EXIT_OK
        for nip in args.nips:
            found = gallery.get(nip)
            if found is None:
                print(f"kiosk gallery show: {nip} is not enrolled", file=sys.stderr)
                status = EXIT_REJECTED
            else:
                print(json.dumps(found.summary(), ensure_ascii=False))
        return status
    missing = gallery.remove(args.nips)
    gallery.save(args.gallery, key, cipher=cipher)
    for nip in missing:
        print(f"kiosk gallery remove: {nip} was not enrolled", file=sys.stderr)
    print(
        f"removed {len(args.nips) - len(missing)}; gallery version {gallery.version}, {len(gallery)} people"
    )
    return EXIT_REJECTED if missing else EXIT_OK


def _cmd_gallery_seal(args: argparse.Namespace) -> int:
    from kiosk import atrest
    from kiosk_contract.gallery import seal_gallery

    cfg = load_config(args.config, camera=False)
    cipher = atrest.open_cipher(cfg.device)
    if cipher is None:
        print(
            f'kiosk gallery seal: {args.config} sets device.data_key = "none": there is no key to seal with',
            file=sys.stderr,
        )
        return EXIT_USAGE
    gallery = seal_gallery(args.input, args.output, cipher, cfg.recognizer.gallery_key())
    print(
        f"sealed {args.input} -> {args.output}: version {gallery.version}, {len(gallery)} people, "
        f"data key id {cipher.key_id} ({cipher.source})"
    )
    return EXIT_OK
