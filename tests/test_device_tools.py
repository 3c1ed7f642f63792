"""IT's tools on a provisioned device: `kiosk gallery seal` and friends read the root-only keys the unit's
LoadCredential= lines name, without systemd-run, and what root writes into the kiosk's state folder is the kiosk's."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from kiosk import cli
from kiosk_contract.gallery import SEALED_MAGIC, Gallery, Person
from kiosk_contract.sealing import DataCipher

ROOT = Path(__file__).resolve().parents[1]
DATA_KEY = bytes(range(7, 39))
NIP = "198001012005011001"


def _device(tmp_path: Path) -> tuple[Path, Path]:
    """A device laid out as provisioning does: root-only keys in etc/, the repository's unit (its key paths moved
    under tmp_path) and a kiosk.toml naming the data key as ``credential:data-key``; (config, unit)."""
    etc = tmp_path / "etc"
    etc.mkdir()
    for name, data in (("data.key", DATA_KEY), ("device.key", b"x"), ("mqtt.key", b"y")):
        (etc / name).write_bytes(data)
        (etc / name).chmod(0o600)
    unit = tmp_path / "kiosk.service"
    unit.write_text((ROOT / "systemd/kiosk.service").read_text().replace("/etc/kiosk/", f"{etc}/"))
    config = etc / "kiosk.toml"
    config.write_text('[device]\ndata_key = "file"\ndata_key_file = "credential:data-key"\n'
                      '[camera]\nsource = "v4l2"\n')
    return config, unit


def _plain_gallery(path: Path) -> None:
    rng = np.random.default_rng(3)
    Gallery([Person(NIP, "Ani", "Umum", [rng.normal(size=128).astype(np.float32)])]).save(path)


@pytest.fixture
def outside_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    config, unit = _device(tmp_path)
    monkeypatch.setattr(cli, "KIOSK_UNIT", unit)
    yield config, unit
    cli.use_unit_credentials(None)


def test_seal_on_a_device_reads_the_key_the_unit_names(outside_systemd: tuple[Path, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = outside_systemd
    plain, sealed = tmp_path / "plain.kgal", tmp_path / "gallery.kgal"
    _plain_gallery(plain)
    assert cli.main(["gallery", "seal", "--config", str(config), str(plain), str(sealed)]) == 0, capsys.readouterr()
    assert sealed.read_bytes()[:4] == SEALED_MAGIC
    assert Gallery.load(sealed, cipher=DataCipher(DATA_KEY, "test")).nips == [NIP]
    # the other tools take the same key: list reads the sealed gallery
    assert cli.main(["gallery", "list", "--gallery", str(sealed), "--config", str(config)]) == 0
    assert NIP in capsys.readouterr().out


def test_a_drop_in_overrides_the_unit_and_a_missing_line_is_named(outside_systemd: tuple[Path, Path],
                                                                  tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config, unit = outside_systemd
    plain, sealed = tmp_path / "plain.kgal", tmp_path / "gallery.kgal"
    _plain_gallery(plain)
    other = tmp_path / "other.key"
    other.write_bytes(bytes(range(50, 82)))
    other.chmod(0o600)
    (unit.parent / "kiosk.service.d").mkdir()
    drop_in = unit.parent / "kiosk.service.d/local.conf"
    drop_in.write_text(f"[Service]\nLoadCredential=\nLoadCredential=data-key:{other}\n")
    assert cli.main(["gallery", "seal", "--config", str(config), str(plain), str(sealed)]) == 0
    sealed_with = DataCipher(bytes(range(50, 82)), "test")
    assert Gallery.load(sealed, cipher=sealed_with).nips == [NIP], "sealed with the drop-in's key"
    drop_in.write_text("[Service]\nLoadCredential=\n")
    capsys.readouterr()
    assert cli.main(["gallery", "seal", "--config", str(config), str(plain), str(tmp_path / "x.kgal")]) == 2
    err = capsys.readouterr().err
    assert f"{unit} has no LoadCredential=data-key:... line" in err and not (tmp_path / "x.kgal").exists()


def test_the_daemon_reads_its_keys_only_from_systemd(outside_systemd: tuple[Path, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = outside_systemd
    assert cli.main(["run", "--config", str(config)]) == 2
    assert "CREDENTIALS_DIRECTORY is not set (not started by systemd?)" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_root_writing_into_the_kiosks_state_folder_gives_the_file_to_the_kiosk(
        outside_systemd: tuple[Path, Path], tmp_path: Path) -> None:
    config, _ = outside_systemd
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 4242, 4243)  # the kiosk user's folder (StateDirectory=)
    plain = tmp_path / "plain.kgal"
    _plain_gallery(plain)
    assert cli.main(["gallery", "seal", "--config", str(config), str(plain), str(state / "gallery.kgal")]) == 0
    st = (state / "gallery.kgal").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (4242, 4243, 0o600)
    assert plain.stat().st_uid == 0, "a root-owned folder keeps root's files"


def test_replay_with_a_device_config_takes_its_source_from_the_command_line(
        outside_systemd: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The device's kiosk.toml (camera.source = "replay" with no camera.path here) serves `kiosk replay --source`:
    the tools that never open the configured camera do not ask for its path."""
    import json

    import cv2

    config, _ = outside_systemd
    config.write_text(config.read_text().replace('source = "v4l2"', 'source = "replay"'))
    plain, sealed = tmp_path / "plain.kgal", tmp_path / "gallery.kgal"
    _plain_gallery(plain)
    assert cli.main(["gallery", "seal", "--config", str(config), str(plain), str(sealed)]) == 0
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        cv2.imwrite(str(frames / f"{i}.png"), np.full((120, 160, 3), 40 * i, np.uint8))
    capsys.readouterr()
    assert cli.main(["replay", "--config", str(config), "--gallery", str(sealed), "--source", str(frames),
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["summary"]["frames"] == 2
    assert cli.main(["run", "--config", str(config)]) == 2, "the daemon still needs camera.path"
    assert "camera.path: required" in capsys.readouterr().err
