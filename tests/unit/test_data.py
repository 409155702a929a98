"""Data loading: ECG5000 from the data directory, the UCR rebuild, and every CSV refusal.

How ``beatwatch data fetch`` gets the files there is tested in test_fetch.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from beatwatch.data import (
    ECG5000_SHA256,
    load_csv,
    load_ecg5000,
    rebuild_ecg_csv,
    ucr_classes,
)
from beatwatch.errors import DataError
from beatwatch.tools.fetch import fetch_ecg5000
from tests.support.paths import SHARED_DATA

SHARED = SHARED_DATA / "ecg5000"
needs_shared = pytest.mark.skipif(
    not (SHARED / "ecg.csv").is_file(), reason="no ../shared/data/ecg5000 beside the repository"
)


def write(tmp_path: Path, text: str, name: str = "d.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def good_rows(n: int = 12, length: int = 3) -> list[str]:
    return [",".join([*(f"{i + j / 10}" for j in range(length)), str(i % 2)]) for i in range(n)]


def test_load_csv_reads_values_labels_and_sha(tmp_path: Path) -> None:
    path = write(tmp_path, "\n".join(good_rows()) + "\n")
    ds = load_csv(path)
    assert ds.x.shape == (12, 3) and ds.x.dtype == np.float32
    assert ds.x[3].tolist() == pytest.approx([3.0, 3.1, 3.2])
    assert ds.normal.tolist() == [i % 2 == 1 for i in range(12)]
    assert ds.classes is None
    assert ds.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_load_csv_header_and_named_label_column(tmp_path: Path) -> None:
    rows = [f"{i},{i * 2},{int(i == 5)}" for i in range(12)]
    path = write(tmp_path, '"Time","V1","Class"\n' + "\n".join(rows))
    ds = load_csv(path, label_column="Class", normal_label=0)
    assert ds.x.shape == (12, 2)
    assert ds.normal.sum() == 11 and not ds.normal[5]
    first = load_csv(path, label_column=0, normal_label=3.0)
    assert first.x[3].tolist() == [6.0, 0.0]
    assert first.normal.tolist() == [i == 3 for i in range(12)]


def test_ragged_row_names_file_and_line(tmp_path: Path) -> None:
    rows = good_rows()
    rows[6] = "1,2,1"
    path = write(tmp_path, "\n".join(rows))
    with pytest.raises(DataError, match=r"d\.csv: line 7: ragged row: 3 fields, expected 4"):
        load_csv(path)


def test_non_numeric_value(tmp_path: Path) -> None:
    rows = good_rows()
    rows[4] = "0.1,abc,0.3,1"
    with pytest.raises(DataError, match=r"line 5: column 1: non-numeric value 'abc'"):
        load_csv(write(tmp_path, "\n".join(rows)))


def test_empty_field(tmp_path: Path) -> None:
    rows = good_rows()
    rows[2] = "0.1,,0.3,1"
    with pytest.raises(DataError, match=r"line 3: column 1: non-numeric value an empty field"):
        load_csv(write(tmp_path, "\n".join(rows)))


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_non_finite_value(tmp_path: Path, bad: str) -> None:
    rows = good_rows()
    rows[9] = f"0.1,0.2,{bad},1"
    with pytest.raises(DataError, match=rf"line 10: column 2: non-finite value '{bad}'"):
        load_csv(write(tmp_path, "\n".join(rows)))


def test_header_line_counts_in_line_numbers(tmp_path: Path) -> None:
    rows = good_rows()
    rows[0] = "0.1,x,0.3,1"
    with pytest.raises(DataError, match=r"line 3: column 1"):
        load_csv(write(tmp_path, "a,b,c,label\n\n" + "\n".join(rows)))


def test_no_normal_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "\n".join(good_rows()))
    with pytest.raises(DataError, match=r"no normal rows \(label == 7\); labels seen: 0, 1"):
        load_csv(path, normal_label=7)


def test_too_few_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"too few rows: 3 \(need at least 10\)"):
        load_csv(write(tmp_path, "\n".join(good_rows(3))))


def test_unknown_label_column(tmp_path: Path) -> None:
    path = write(tmp_path, "\n".join(good_rows()))
    with pytest.raises(DataError, match=r"unknown label column 9 \(rows have 4 columns\)"):
        load_csv(path, label_column=9)
    with pytest.raises(DataError, match=r"unknown label column 'Class' \(the file has no header"):
        load_csv(path, label_column="Class")
    named = write(tmp_path, "a,b,c,d\n" + "\n".join(good_rows()), "h.csv")
    with pytest.raises(DataError, match=r"unknown label column 'Class' \(columns are a, b, c, d\)"):
        load_csv(named, label_column="Class")


def test_numeric_header_as_pandas_writes_it_is_a_header(tmp_path: Path) -> None:
    ds = load_csv(write(tmp_path, "0,1,2,3\n" + "\n".join(good_rows())))
    assert ds.x.shape == (12, 3)
    assert ds.x[0].tolist() == pytest.approx([0.0, 0.1, 0.2])


def test_a_first_row_with_a_bad_value_is_not_taken_for_a_header(tmp_path: Path) -> None:
    rows = good_rows()
    rows[0] = "0.1,x,0.3,1"
    with pytest.raises(
        DataError, match=r"line 1: column 1: non-numeric value 'x' among decimal numbers"
    ):
        load_csv(write(tmp_path, "\n".join(rows)))


def test_values_beyond_float32_name_their_line_and_column(tmp_path: Path) -> None:
    rows = [f"{i % 2},{i}.5,{i}.25,1" for i in range(12)]
    rows[3] = "1,0.5,1e300,1"  # finite as float64, infinite as the float32 the model takes
    with pytest.raises(DataError, match=r"line 4: column 2: value '1e\+?300' is beyond float32"):
        load_csv(write(tmp_path, "\n".join(rows)), label_column=0)


def test_text_in_the_label_column_says_labels_are_numbers(tmp_path: Path) -> None:
    rows = good_rows()
    rows[5] = "0.1,0.2,0.3,abnormal"
    with pytest.raises(DataError, match=r"column 3: non-numeric value 'abnormal' in the label"):
        load_csv(write(tmp_path, "\n".join(rows)))


def test_gzip_file_is_named_as_such(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "d.csv.gz"
    path.write_bytes(gzip.compress("\n".join(good_rows()).encode()))
    with pytest.raises(DataError, match="gzip-compressed; decompress it first"):
        load_csv(path)


def test_labels_in_messages_are_exact(tmp_path: Path) -> None:
    path = write(tmp_path, "\n".join(good_rows()))
    with pytest.raises(DataError, match=r"label == 1234567\); labels seen: 0, 1$"):
        load_csv(path, normal_label=1234567)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: cannot read"):
        load_csv(tmp_path / "nope.csv")


@needs_shared
def test_load_ecg5000_from_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BEATWATCH_CACHE_DIR", str(tmp_path))
    fetch_ecg5000(copy=SHARED)
    ds = load_ecg5000()
    assert ds.source == str(tmp_path / "ecg5000" / "ecg.csv")
    assert ds.sha256 == ECG5000_SHA256
    assert ds.x.shape == (4998, 140)
    assert int(ds.normal.sum()) == 2919
    assert ds.x[0, :3].tolist() == pytest.approx([-0.11252183, -2.8272038, -3.7738969])
    assert ds.classes is not None
    assert np.bincount(ds.classes).tolist() == [0, 2919, 1765, 96, 194, 24]
    assert np.array_equal(ds.classes == 1, ds.normal)


@needs_shared
def test_rebuild_from_ucr_is_byte_exact() -> None:
    train = (SHARED / "ucr" / "ECG5000_TRAIN.tsv").read_bytes()
    test = (SHARED / "ucr" / "ECG5000_TEST.tsv").read_bytes()
    rebuilt = rebuild_ecg_csv(train, test)
    assert hashlib.sha256(rebuilt).hexdigest() == ECG5000_SHA256
    classes = ucr_classes(train, test)
    assert len(classes) == 4998 and classes[:3].tolist() == [1, 1, 1]


def test_missing_data_is_one_line_naming_the_fetch_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BEATWATCH_CACHE_DIR", str(tmp_path))
    with pytest.raises(DataError) as caught:
        load_ecg5000()
    message = str(caught.value)
    assert message == (
        f"no ECG5000 data at {tmp_path / 'ecg5000' / 'ecg.csv'}: "
        "run `beatwatch data fetch ecg5000` to fetch it"
    )
    assert not (tmp_path / "ecg5000").exists(), "loading must never fetch"


def test_a_tampered_copy_is_refused_naming_the_fetch_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ecg5000").mkdir()
    (tmp_path / "ecg5000" / "ecg.csv").write_text("\n".join(good_rows()))
    monkeypatch.setenv("BEATWATCH_CACHE_DIR", str(tmp_path))
    with pytest.raises(DataError, match=r"sha256 differs\): run `beatwatch data fetch ecg5000`"):
        load_ecg5000()


def test_an_explicit_file_is_read_whatever_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BEATWATCH_CACHE_DIR", str(tmp_path / "absent"))
    path = write(tmp_path, "\n".join(good_rows()) + "\n")
    ds = load_ecg5000(path)
    assert ds.source == str(path) and ds.classes is None
