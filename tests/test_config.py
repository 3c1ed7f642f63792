"""The configuration loader: strict parsing, every problem at once, secrets kept out, docs kept in sync."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from kiosk.config import (
    KioskConfig,
    check_command,
    config_reference_markdown,
    config_to_toml,
    load_config,
    parse_config,
    read_secret,
)
from kiosk.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "kiosk.toml"
DOCS = ROOT / "docs" / "config.md"


def write(tmp_path: Path, text: str, name: str = "kiosk.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    return info.value.problems


def test_valid_file(tmp_path: Path) -> None:
    path = write(tmp_path, """
[device]
id = "kiosk-07"
timezone = "Asia/Jayapura"
[camera]
source = "v4l2"
fps = 15
width = 640
height = 480
[recognizer]
gallery = "/srv/kiosk/g.kgal"
[recognizer.decision]
accept_distance = 0.5
agreement = 3
""")
    cfg = load_config(path)
    assert cfg.device.id == "kiosk-07"
    assert cfg.device.timezone == "Asia/Jayapura"
    assert cfg.camera.source == "v4l2"
    assert cfg.camera.fps == 15.0 and isinstance(cfg.camera.fps, float)
    assert (cfg.camera.width, cfg.camera.height) == (640, 480)
    assert cfg.recognizer.gallery == Path("/srv/kiosk/g.kgal")
    assert cfg.recognizer.decision.accept_distance == 0.5
    assert cfg.recognizer.decision.agreement == 3


def test_missing_keys_take_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[camera]\nsource = "picamera2"\n'))
    assert cfg == replace(KioskConfig(), camera=replace(KioskConfig().camera, source="picamera2"))
    assert cfg.device.timezone == "Asia/Makassar"
    assert cfg.recognizer.decision.accept_distance == 0.475
    assert cfg.recognizer.gallery_key_file is None


def test_unknown_top_level_key_suggests_closest(tmp_path: Path) -> None:
    assert problems(write(tmp_path, '[camera]\nsource = "v4l2"\n[devise]\nid = "k1"\n')) == [
        'devise: unknown key (did you mean "device"?); '
        "the top level allows: device, camera, recognizer, schedule, display, events, mqtt, hardware, fallback"
    ]


def test_unknown_nested_key_suggests_closest(tmp_path: Path) -> None:
    text = '[camera]\nsource = "v4l2"\n[recognizer.decision]\naccept_distnce = 0.4\n'
    assert problems(write(tmp_path, text)) == [
        'recognizer.decision.accept_distnce: unknown key (did you mean "accept_distance"?); '
        "[recognizer.decision] allows: "
        "accept_distance, min_margin, agreement, fused_accept_distance, max_encodings, encode_every_frames, "
        "retry_after_s"
    ]


def test_wrong_types(tmp_path: Path) -> None:
    found = problems(write(tmp_path, """
[camera]
source = "usb"
fps = "fast"
width = true
height = 720.0
realtime = 1
path = 5
[display]
backend = "lg"
[recognizer]
geometry = 3
"""))
    assert found == [
        'camera.source: must be one of "picamera2", "v4l2", "replay", got string "usb"',
        'camera.fps: must be a number, got string "fast"',
        "camera.width: must be an integer, got boolean true",
        "camera.height: must be an integer, got float 720.0",
        "camera.realtime: must be true or false, got integer 1",
        "camera.path: must be a path (string), got integer 5",
        'display.backend: must be one of "null", "log", "pygame", got string "lg" (did you mean "log"?)',
        "recognizer.geometry: must be a table ([recognizer.geometry]), got integer 3",
    ]


def test_int_is_accepted_for_float_but_bool_is_not(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[camera]\nsource = "v4l2"\nfps = 25\n'))
    assert cfg.camera.fps == 25.0
    assert problems(write(tmp_path, '[camera]\nsource = "v4l2"\nfps = true\n')) == [
        "camera.fps: must be a number, got boolean true"
    ]


def test_ranges(tmp_path: Path) -> None:
    found = problems(write(tmp_path, """
[camera]
source = "v4l2"
width = 100
[recognizer.decision]
accept_distance = 3.5
[recognizer.quality]
max_yaw = nan
[recognizer.tracker]
min_iou = 0
"""))
    assert found == [
        "camera.width: must be at least 160, got 100",
        "recognizer.decision.accept_distance: must be at most 2, got 3.5",
        "recognizer.quality.max_yaw: must be a finite number, got nan",
        "recognizer.tracker.min_iou: must be at least 0.01, got 0.0",
    ]


def test_cross_field_rules(tmp_path: Path) -> None:
    found = problems(write(tmp_path, """
[device]
timezone = "Asia/Makasar"
[camera]
source = "replay"
[recognizer.geometry]
min_distance_m = 2
max_distance_m = 1.5
[recognizer.decision]
agreement = 5
max_encodings = 4
"""))
    assert found == [
        'device.timezone: unknown time zone "Asia/Makasar" (did you mean "Asia/Makassar"?); '
        'use an IANA name: "Asia/Makassar" (WITA), "Asia/Jakarta" (WIB) or "Asia/Jayapura" (WIT)',
        'camera.path: required when camera.source is "replay" '
        "(a video file, an animated GIF, or a folder of images)",
        "recognizer.geometry.min_distance_m: "
        "must be less than recognizer.geometry.max_distance_m (2.0 >= 1.5)",
        "recognizer.decision.agreement: "
        "must be at most recognizer.decision.max_encodings (5 > 4), or no one is ever accepted",
    ]


def test_cross_field_rules_skip_keys_that_already_failed(tmp_path: Path) -> None:
    text = '[camera]\nsource = "usb"\n[recognizer.geometry]\nmax_distance_m = "far"\nmin_distance_m = 2\n'
    found = problems(write(tmp_path, text))
    assert [p.split(":")[0] for p in found] == ["camera.source", "recognizer.geometry.max_distance_m"]


def test_every_problem_reported_at_once_with_paths(tmp_path: Path) -> None:
    path = write(tmp_path, """
colour = "red"
[device]
ofice = "Kantor"
[camera]
source = "v4l2"
fps = 500
[recognizer.decision]
accept_distance = 3.5
""")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: 4 problem(s) in the configuration:\n")
    allowed = "device, camera, recognizer, schedule, display, events, mqtt"
    assert f"\n  - colour: unknown key; the top level allows: {allowed}" in message
    assert '\n  - device.ofice: unknown key (did you mean "office"?)' in message
    assert "\n  - camera.fps: must be at most 120, got 500" in message
    assert "\n  - recognizer.decision.accept_distance: must be at most 2, got 3.5" in message


def test_toml_syntax_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[camera]\nsource = "v4l2"\nfps = = 3\n')
    [problem] = problems(path)
    assert problem.startswith("TOML syntax error: ")
    assert "line 3, column" in problem


def test_missing_file(tmp_path: Path) -> None:
    [problem] = problems(tmp_path / "absent.toml")
    assert problem.startswith("file not found;")
    assert "/etc/kiosk/kiosk.toml" in problem


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.toml"
    path.write_bytes(b'[device]\noffice = "\xff"\n')
    [problem] = problems(path)
    assert problem.startswith("not UTF-8 text")


@pytest.mark.parametrize("name", ["mqtt_password", "api_token", "client_secret", "private_key"])
def test_secret_in_toml_is_rejected_without_echoing_it(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, f'[camera]\nsource = "v4l2"\n[recognizer]\n{name} = "hunter2"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    [problem] = info.value.problems
    assert problem.startswith(f"recognizer.{name}: secrets must not be written in the configuration file;")
    assert f"set {name}_file to its path" in problem
    assert f'{name}_file = "credential:NAME"' in problem
    assert "hunter2" not in str(info.value)


def test_secret_file_keys_accept_paths_and_credentials(tmp_path: Path) -> None:
    base = '[camera]\nsource = "v4l2"\n[recognizer]\n'
    cfg = load_config(write(tmp_path, base + 'gallery_key_file = "credential:gallery-key"\n'))
    assert cfg.recognizer.gallery_key_file == Path("credential:gallery-key")
    cfg = load_config(write(tmp_path, base + 'gallery_key_file = "keys/gallery.key"\n'))
    assert cfg.recognizer.gallery_key_file == tmp_path / "keys" / "gallery.key"
    assert problems(write(tmp_path, base + 'gallery_key_file = "credential:../x"\n')) == [
        'recognizer.gallery_key_file: "credential:../x" is not a valid credential; write "credential:NAME" '
        "with the name given to LoadCredential= (a plain name, no slashes)"
    ]


def test_relative_paths_resolve_against_the_file_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    write(etc, '[device]\nstate_dir = "state"\n[camera]\npath = "clips/lobby.mp4"\n'
               '[recognizer]\ngallery = "/abs/g.kgal"\n')
    monkeypatch.chdir(tmp_path)
    cfg = load_config(Path("etc/kiosk.toml"))
    assert cfg.camera.path == tmp_path / "etc" / "clips" / "lobby.mp4"
    assert cfg.device.state_dir == tmp_path / "etc" / "state"
    assert cfg.recognizer.gallery == Path("/abs/g.kgal")


def test_parse_config_without_base_dir_keeps_relative_paths() -> None:
    cfg = parse_config({"camera": {"path": "clip.mp4"}}, "<test>")
    assert cfg.camera.path == Path("clip.mp4")
    with pytest.raises(ConfigError, match=r"^<test>: 1 problem"):
        parse_config({"camera": {"source": "v4l2", "fps": 0}}, "<test>")


def test_read_secret_from_file(tmp_path: Path) -> None:
    key = tmp_path / "gallery.key"
    key.write_bytes(b"s3cr3t\n")
    key.chmod(0o600)
    assert read_secret(key) == b"s3cr3t\n"
    assert read_secret(str(key)) == b"s3cr3t\n"


def test_read_secret_refuses_open_permissions(tmp_path: Path) -> None:
    key = tmp_path / "gallery.key"
    key.write_bytes(b"s3cr3t")
    key.chmod(0o640)
    with pytest.raises(ConfigError) as info:
        read_secret(key, key="recognizer.gallery_key_file")
    assert info.value.source == str(key)
    assert info.value.problems == [
        "recognizer.gallery_key_file: the secret file is open to group or others (mode 0640); "
        f"run: chmod 600 {key} (owned by the kiosk user)"
    ]


def test_read_secret_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the secret file does not exist"):
        read_secret(tmp_path / "absent.key")
    empty = tmp_path / "empty.key"
    empty.write_bytes(b"")
    empty.chmod(0o600)
    with pytest.raises(ConfigError, match="the secret file is empty"):
        read_secret(empty)


def test_read_secret_from_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "gallery-key").write_bytes(b"from-systemd")
    (creds / "gallery-key").chmod(0o440)  # systemd may grant access through group/ACL bits: not refused
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert read_secret(Path("credential:gallery-key")) == b"from-systemd"
    assert read_secret("credential:gallery-key") == b"from-systemd"
    with pytest.raises(ConfigError, match="the secret file does not exist"):
        read_secret("credential:other")


def test_read_secret_credential_without_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError) as info:
        read_secret(Path("credential:gallery-key"), key="recognizer.gallery_key_file")
    [problem] = info.value.problems
    assert problem.startswith("recognizer.gallery_key_file: CREDENTIALS_DIRECTORY is not set")
    assert "LoadCredential=gallery-key:" in problem


def test_toml_round_trip(tmp_path: Path) -> None:
    cfg = parse_config({
        "device": {"office": 'Kantor "Pusat"\\ A'},
        "camera": {"source": "replay", "path": "/data/clip.mp4", "loop": True},
        "recognizer": {"gallery_key_file": "credential:gallery-key", "decision": {"accept_distance": 0.4}},
    }, "<test>")
    text = config_to_toml(cfg)
    assert "# Best distance must be at most this.\n# Allowed: 0 to 2.\naccept_distance = 0.4\n" in text
    assert load_config(write(tmp_path, text)) == cfg


def test_example_file_loads_and_is_generated() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.camera.source == "picamera2"
    assert cfg.recognizer.gallery == Path("/var/lib/kiosk/gallery.kgal")
    assert cfg.device.timezone == "Asia/Makassar"
    assert EXAMPLE.read_text(encoding="utf-8") == config_to_toml(cfg), (
        "examples/kiosk.toml is out of date with the schema; regenerate it (see docs/config.md, Reference)"
    )


def test_docs_reference_table_is_up_to_date() -> None:
    match = re.search(r"<!-- reference:start -->\n(.*)<!-- reference:end -->", DOCS.read_text("utf-8"), re.S)
    assert match, "docs/config.md lost its reference markers"
    assert match[1] == config_reference_markdown(), (
        "docs/config.md's reference table is out of date with the schema; regenerate it (see its Reference)"
    )
    for key in ("`camera.source`", "`recognizer.decision.accept_distance`", "`display.backend`"):
        assert key in match[1]


def test_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_command(EXAMPLE) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK: {EXAMPLE}\n")
    assert "device kiosk-bkpsdm-01 (BKPSDM Kabupaten Contoh, Asia/Makassar), camera picamera2, " in out
    assert out.endswith("gallery /var/lib/kiosk/gallery.kgal\n")

    bad = write(tmp_path, "[camera]\nfps = 0\n")
    assert check_command(bad) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"{bad}: 2 problem(s) in the configuration:\n")
    assert "camera.fps: must be at least 1, got 0" in captured.err


def test_arrays_times_and_dates(tmp_path: Path) -> None:
    """The generic loader: tuple[X, ...] from arrays (of tables too), local times and local dates."""
    cfg = load_config(write(tmp_path, """
[camera]
source = "v4l2"
[schedule]
holidays = [2026-08-17]
windows = [{days = ["sat"], kind = "lembur_masuk", start = "07:30", end = 09:00:00}]
"""))
    [w] = cfg.schedule.windows
    assert (w.days, w.kind) == (("sat",), "lembur_masuk")
    assert (w.start.isoformat(), w.end.isoformat()) == ("07:30:00", "09:00:00")
    assert cfg.schedule.holidays[0].isoformat() == "2026-08-17"
    assert problems(write(tmp_path, """
[camera]
source = "v4l2"
[schedule]
holidays = 2026-08-17
windows = [{days = ["sat", 6], kind = "masuk", start = 1970-01-01, end = "09:00:00", extra = 1}, "x"]
""")) == [
        "schedule.holidays: must be an array, got local date 2026-08-17",
        "schedule.windows[0].days[1]: "
        'must be one of "mon", "tue", "wed", "thu", "fri", "sat", "sun", got integer 6',
        'schedule.windows[0].start: must be a local time (07:30:00, or the string "07:30"), '
        "got local date 1970-01-01",
        "schedule.windows[0].extra: unknown key; each [[schedule.windows]] entry allows: days, kind, start, end",
        "schedule.windows[1]: must be a table, got string \"x\"",
    ]


def test_reference_table_describes_arrays_times_and_dates() -> None:
    table = config_reference_markdown()
    assert "| `schedule.windows` | array of tables | `[{days = [" in table
    assert "| `schedule.windows[].start` | local time | required |  |" in table
    assert "| `schedule.holidays` | array of local date | `[]` |  |" in table
    assert '| `schedule.windows[].days` | array of string | required | at least 1 item(s), each one of "mon",' in table
