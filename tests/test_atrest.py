"""The device data key and its cipher: key files, the Pi's OTP key through a stand-in vcmailbox, sealing and opening."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kiosk.atrest import VCMAILBOX_ARGS, DataKeyError, open_cipher, parse_otp_response, read_otp_key
from kiosk.config import DeviceConfig, load_config
from kiosk.errors import ConfigError
from kiosk_contract.sealing import OVERHEAD, DataCipher, SealError

KEY = bytes(range(1, 33))
OTP_WORDS = ["0x01020304", "0x05060708", "0x090a0b0c", "0x0d0e0f10", "0x11121314", "0x15161718", "0x191a1b1c",
             "0x1d1e1f20"]  # fmt: skip


def vcmailbox_answer(key_words: list[str], response: str = "0x80000000", tag_length: str = "0x80000028") -> str:
    """vcmailbox's output for VCMAILBOX_ARGS, as its printf("0x%08x ") writes it: size, code, tag, sizes, rows."""
    words = ["0x00000040", response, "0x00030081", "0x00000028", tag_length, "0x00000000", "0x00000008"]
    return " ".join(words + key_words + ["0x00000000"]) + " \n"


def fake_vcmailbox(folder: Path, output: str, status: int = 0) -> Path:
    """A stand-in vcmailbox (this machine has no /dev/vcio) that checks it got the OTP request and prints ``output``."""
    folder.mkdir(exist_ok=True)
    (folder / "answer.txt").write_text(output)
    script = folder / "vcmailbox"
    script.write_text(
        "#!/bin/sh\n"
        f'[ "$*" = "{" ".join(VCMAILBOX_ARGS)}" ] || {{ echo "unexpected request: $*"; exit 3; }}\n'
        f'cat "{folder / "answer.txt"}"\n'
        f"exit {status}\n"
    )
    script.chmod(0o755)
    return script


def key_file(tmp_path: Path, data: bytes = KEY, mode: int = 0o600) -> Path:
    path = tmp_path / "data.key"
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_seal_and_open_round_trip_with_fresh_nonces() -> None:
    cipher = DataCipher(KEY, "test")
    first = cipher.seal("evidence", b"\xff\xd8 a jpeg", b"seq 7")
    second = cipher.seal("evidence", b"\xff\xd8 a jpeg", b"seq 7")
    assert first != second and len(first) == len(b"\xff\xd8 a jpeg") + OVERHEAD
    assert cipher.open("evidence", first, b"seq 7") == b"\xff\xd8 a jpeg"
    assert b"a jpeg" not in first


def test_a_blob_opens_only_for_its_purpose_context_and_key() -> None:
    cipher = DataCipher(KEY, "test")
    blob = cipher.seal("evidence", b"photo", b"\x00" * 7 + b"\x01")
    with pytest.raises(SealError, match="evidence data fails authentication"):
        cipher.open("evidence", blob, b"\x00" * 7 + b"\x02")  # moved to another row
    with pytest.raises(SealError, match="gallery data fails authentication"):
        cipher.open("gallery", blob, b"\x00" * 7 + b"\x01")  # used for another purpose
    with pytest.raises(SealError):
        DataCipher(bytes(32 - i for i in range(32)), "other").open("evidence", blob, b"\x00" * 7 + b"\x01")


@pytest.mark.parametrize("damage", ["flip_nonce", "flip_body", "flip_tag", "truncate", "tiny"])
def test_damaged_blob_is_refused(damage: str) -> None:
    cipher = DataCipher(KEY, "test")
    blob = bytearray(cipher.seal("gallery", b"templates" * 10))
    if damage == "flip_nonce":
        blob[0] ^= 1
    elif damage == "flip_body":
        blob[20] ^= 1
    elif damage == "flip_tag":
        blob[-1] ^= 1
    elif damage == "truncate":
        del blob[-5:]
    else:
        blob = blob[:OVERHEAD - 1]
    with pytest.raises(SealError, match=r"too short|fails authentication"):
        cipher.open("gallery", bytes(blob))


def test_key_id_is_stable_per_key_and_the_key_never_shows() -> None:
    a, again, b = DataCipher(KEY, "x"), DataCipher(KEY, "y"), DataCipher(bytes(reversed(KEY)), "x")
    assert a.key_id == again.key_id != b.key_id and len(a.key_id) == 16
    assert KEY.hex() not in repr(a) and a.key_id in repr(a)
    with pytest.raises(ValueError, match="32 bytes"):
        DataCipher(KEY[:16], "short")


def test_no_data_key_means_no_cipher() -> None:
    assert open_cipher(DeviceConfig()) is None


def test_key_file_gives_the_cipher(tmp_path: Path) -> None:
    cipher = open_cipher(DeviceConfig(data_key="file", data_key_file=key_file(tmp_path)))
    assert cipher is not None and cipher.key_id == DataCipher(KEY, "-").key_id
    assert str(tmp_path / "data.key") in cipher.source


def test_key_as_a_systemd_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "data-key").write_bytes(KEY)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cipher = open_cipher(DeviceConfig(data_key="file", data_key_file=Path("credential:data-key")))
    assert cipher is not None and cipher.key_id == DataCipher(KEY, "-").key_id


@pytest.mark.parametrize(
    ("data", "mode", "message"),
    [
        (KEY + b"\n", 0o600, "must be 32 random bytes, this one is 33 bytes; create it with: head -c 32"),
        (bytes(32), 0o600, "this one is all zeros"),
        (KEY, 0o644, "open to group or others"),
    ],
)
def test_bad_key_file_is_a_clear_error(tmp_path: Path, data: bytes, mode: int, message: str) -> None:
    path = key_file(tmp_path, data, mode)
    with pytest.raises(ConfigError, match=message) as err:
        open_cipher(DeviceConfig(data_key="file", data_key_file=path))
    assert str(path) in str(err.value) and "device.data_key_file" in str(err.value)


def test_file_mode_without_a_key_file_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r'device\.data_key_file: required when device\.data_key = "file"'):
        open_cipher(DeviceConfig(data_key="file"))


def test_otp_key_is_read_through_vcmailbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_vcmailbox(tmp_path / "bin", vcmailbox_answer(OTP_WORDS))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert read_otp_key() == KEY  # the words, big-endian, as rpi-otp-private-key prints them
    cipher = open_cipher(DeviceConfig(data_key="otp"))
    # The same 32 bytes in a key file open the same data: a key kept at programming time can recover a card.
    assert cipher is not None and cipher.key_id == DataCipher(KEY, "-").key_id and "OTP" in cipher.source


def test_unprogrammed_otp_is_refused_with_how_to_program_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_vcmailbox(tmp_path / "bin", vcmailbox_answer(["0x00000000"] * 8))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(DataKeyError, match=r'not programmed \(all zeros\).*rpi-otp-private-key -w.*data_key = "file"'):
        open_cipher(DeviceConfig(data_key="otp"))


def test_board_without_otp_key_support_is_refused() -> None:
    # "Unknown tags are ignored (the response bit will not be set)": a Pi 3 or old firmware.
    with pytest.raises(DataKeyError, match="no OTP private key"):
        parse_otp_response(vcmailbox_answer(OTP_WORDS, tag_length="0x00000028"))
    with pytest.raises(DataKeyError, match="no OTP private key"):
        parse_otp_response(vcmailbox_answer(OTP_WORDS, response="0x80000001"))


@pytest.mark.parametrize("output", ["", "ioctl_set_msg failed:-1", "0x00000040 0x80000000 0x00030081"])
def test_malformed_vcmailbox_output_is_refused(output: str) -> None:
    with pytest.raises(DataKeyError, match="unexpected vcmailbox output"):
        parse_otp_response(output)


def test_vcmailbox_without_access_to_vcio_says_what_to_allow(tmp_path: Path) -> None:
    # vcmailbox prints this on stdout and exits with -1 when it cannot open /dev/vcio.
    script = fake_vcmailbox(tmp_path, "Can't open device file: /dev/vcio\n", status=255)
    vcio = r"exit status 255\): Can't open device file: /dev/vcio.*DeviceAllow=/dev/vcio"
    with pytest.raises(DataKeyError, match=vcio):
        read_otp_key(str(script))


def test_missing_vcmailbox_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataKeyError, match=r'not installed.*raspi-utils.*data_key = "file"'):
        read_otp_key(str(tmp_path / "no-vcmailbox"))


def test_config_check_wants_a_key_file_for_file_mode(tmp_path: Path) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text('[device]\ndata_key = "file"\n[camera]\nsource = "v4l2"\n')
    with pytest.raises(ConfigError, match=r'device\.data_key_file: required when device\.data_key is "file"'):
        load_config(config)
    config.write_text('[device]\ndata_key = "file"\ndata_key_file = "credential:data-key"\n[camera]\nsource = "v4l2"\n')
    assert load_config(config).device.data_key_file == Path("credential:data-key")
