"""Continuous ECG recordings: WFDB records and CSV signals, with reference annotations.

A :class:`Recording` is the whole signal of one record in millivolts, a column
per lead, with the reference beat annotations when the record has them. Leads
are picked by name (``MLII`` is lead 0 in most MIT-BIH records but lead 1 in
record 114), and annotation symbols map to the AAMI classes of ANSI/AAMI EC57:
N = N L R e j, S = A a J S, V = V E, F = F, Q = / f Q; every other symbol
(rhythm changes, noise, comments) is not a beat.

Errors are :class:`~beatwatch.errors.DataError` with one line naming the file.
No TensorFlow and no Kafka here: the producer and the evaluation import it.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from beatwatch.errors import DataError

AAMI_CLASSES = ("N", "S", "V", "F", "Q")
_AAMI_OF_SYMBOL = {
    **dict.fromkeys("NLRej", "N"),
    **dict.fromkeys("AaJS", "S"),
    **dict.fromkeys("VE", "V"),
    "F": "F",
    **dict.fromkeys("/fQ", "Q"),
}
PACED_SYMBOLS = frozenset("/f")
PREFERRED_LEADS = ("MLII", "II", "ML2")
DEFAULT_ANNOTATOR = "atr"
WFDB_SUFFIXES = (".hea", ".dat", ".atr")


def aami_class(symbol: str) -> str | None:
    """The AAMI class (``N``, ``S``, ``V``, ``F``, ``Q``) of a beat symbol; None for non-beats."""
    return _AAMI_OF_SYMBOL.get(symbol)


@dataclass(frozen=True)
class Recording:
    """One continuous record.

    Attributes:
        name: the record's name (its file stem), used for stream ids and reports.
        fs_hz: sampling rate.
        signal: ``(n_samples, n_leads)`` float64, millivolts.
        lead_names: the name of each column of ``signal``.
        start_ms: the record's start, epoch ms, when the file records one; else None.
        ann_index: sample index of each reference annotation (beats only), int64.
        ann_symbol: the annotation symbol of each entry of ``ann_index``.
        vf_intervals: ``(start, end)`` sample ranges of ventricular flutter or
            fibrillation (annotations ``[`` to ``]``), where EC57 compares no beats.
    """

    name: str
    fs_hz: float
    signal: np.ndarray
    lead_names: tuple[str, ...]
    start_ms: int | None = None
    ann_index: np.ndarray | None = None
    ann_symbol: list[str] | None = field(default=None)
    vf_intervals: tuple[tuple[int, int], ...] = ()

    @property
    def n_samples(self) -> int:
        """Samples per lead."""
        return int(self.signal.shape[0])

    @property
    def duration_s(self) -> float:
        """Length of the record in seconds."""
        return self.n_samples / self.fs_hz

    @property
    def has_annotations(self) -> bool:
        """Whether reference beat annotations came with the record."""
        return self.ann_index is not None

    @property
    def ann_class(self) -> list[str]:
        """The AAMI class of each reference beat (empty without annotations)."""
        return [aami_class(s) or "Q" for s in (self.ann_symbol or [])]

    @property
    def is_paced(self) -> bool:
        """A paced record (EC57 leaves these out of arrhythmia statistics)."""
        return any(s in PACED_SYMBOLS for s in self.ann_symbol or [])

    def lead_index(self, name: str | None = None) -> int:
        """Column of lead ``name``; without a name the first of MLII/II/ML2, else lead 0.

        Raises:
            DataError: no lead of that name.
        """
        if name is None:
            for preferred in PREFERRED_LEADS:
                if preferred in self.lead_names:
                    return self.lead_names.index(preferred)
            return 0
        if name in self.lead_names:
            return self.lead_names.index(name)
        if name.isdigit() and int(name) < len(self.lead_names):
            return int(name)
        raise DataError(f"{self.name}: no lead {name!r} (leads: {', '.join(self.lead_names)})")

    def lead(self, name: str | None = None) -> np.ndarray:
        """One lead's samples, float64 millivolts."""
        return np.ascontiguousarray(self.signal[:, self.lead_index(name)])


def _fill_gaps(signal: np.ndarray, where: str) -> np.ndarray:
    """Replace NaN samples (WFDB's invalid-sample marker) by the last valid value per lead.

    Filters would spread one NaN over the whole rest of the signal.
    """
    if not np.isnan(signal).any():
        return signal
    out = signal.copy()
    for col in range(out.shape[1]):
        lead = out[:, col]
        bad = np.isnan(lead)
        if bad.all():
            raise DataError(f"{where}: lead {col} holds no valid sample")
        idx = np.where(~bad, np.arange(lead.size), 0)
        np.maximum.accumulate(idx, out=idx)
        first = int(np.flatnonzero(~bad)[0])
        idx[:first] = first
        out[:, col] = lead[idx]
    return out


def _record_stem(path: str | Path) -> Path:
    """``.../208``, ``.../208.hea`` or ``.../208.dat`` -> ``.../208``."""
    p = Path(path)
    return p.with_suffix("") if p.suffix in WFDB_SUFFIXES else p


def read_wfdb(path: str | Path, *, annotator: str | None = DEFAULT_ANNOTATOR) -> Recording:
    """Read a WFDB record (``.hea`` + signal files) and its reference annotations.

    Args:
        path: the record, with or without the ``.hea`` suffix.
        annotator: annotation file extension (``atr``); None reads none. A
            missing annotation file is not an error: the record has no labels.

    Raises:
        DataError: no header, unreadable or malformed files.
    """
    import wfdb  # imported here: a few hundred ms, only for commands that read records

    stem = _record_stem(path)
    header = stem.with_name(stem.name + ".hea")
    if not header.is_file():
        raise DataError(f"{stem}: no WFDB record there ({header.name} not found)")
    try:
        record = wfdb.rdrecord(str(stem))
    except FileNotFoundError as exc:
        raise DataError(f"{stem}: missing signal file {Path(exc.filename or '').name}") from None
    except Exception as exc:  # wfdb raises many kinds on malformed files
        raise DataError(f"{stem}: cannot read WFDB record: {str(exc)[:120]}") from None
    signal = record.p_signal
    if signal is None or signal.ndim != 2 or signal.shape[0] == 0:
        raise DataError(f"{stem}: WFDB record holds no samples")
    fs_hz = float(record.fs)
    if not math.isfinite(fs_hz) or fs_hz <= 0:
        raise DataError(f"{stem}: invalid sampling rate {record.fs!r}")
    start_ms = None
    if record.base_datetime is not None:
        start_ms = int(record.base_datetime.timestamp() * 1000)
    ann_index, ann_symbol = None, None
    vf_intervals: tuple[tuple[int, int], ...] = ()
    if annotator is not None and stem.with_name(f"{stem.name}.{annotator}").is_file():
        try:
            ann = wfdb.rdann(str(stem), annotator)
        except Exception as exc:
            raise DataError(
                f"{stem}.{annotator}: cannot read annotations: {str(exc)[:120]}"
            ) from None
        symbols = list(ann.symbol)
        beat = np.array([aami_class(s) is not None for s in symbols], dtype=bool)
        ann_index = np.asarray(ann.sample, dtype=np.int64)[beat]
        ann_symbol = [s for s, b in zip(symbols, beat, strict=True) if b]
        order = np.argsort(ann_index, kind="stable")  # matching and labelling bisect them
        ann_index = ann_index[order]
        ann_symbol = [ann_symbol[i] for i in order.tolist()]
        vf_intervals = _vf_intervals(symbols, ann.sample, signal.shape[0])
    return Recording(
        name=stem.name,
        fs_hz=fs_hz,
        signal=_fill_gaps(np.asarray(signal, dtype=np.float64), str(stem)),
        lead_names=tuple(str(n) for n in record.sig_name),
        start_ms=start_ms,
        ann_index=ann_index,
        ann_symbol=ann_symbol,
        vf_intervals=vf_intervals,
    )


def _vf_intervals(
    symbols: list[str], samples: np.ndarray, n_samples: int
) -> tuple[tuple[int, int], ...]:
    """Ventricular flutter/fibrillation episodes: from each ``[`` to the next ``]``."""
    out: list[tuple[int, int]] = []
    start: int | None = None
    for symbol, at in zip(symbols, samples.tolist(), strict=True):
        if symbol == "[" and start is None:
            start = int(at)
        elif symbol == "]" and start is not None:
            out.append((start, int(at)))
            start = None
    if start is not None:
        out.append((start, n_samples))
    return tuple(out)


def read_csv_signal(path: str | Path, fs_hz: float, *, name: str | None = None) -> Recording:
    """Read a CSV signal: a header row of lead names, then one row per sample (millivolts).

    Args:
        path: the CSV file.
        fs_hz: its sampling rate (a CSV does not record one).
        name: the record's name; default the file stem.

    Raises:
        DataError: missing file, no header, ragged rows, non-numeric or non-finite values.
    """
    p = Path(path)
    if not math.isfinite(fs_hz) or fs_hz <= 0:
        raise DataError(f"{p}: sampling rate must be > 0, got {fs_hz}")
    try:
        with p.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise DataError(f"{p}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    if not rows:
        raise DataError(f"{p}: empty file")
    lead_names = tuple(cell.strip() for cell in rows[0])
    try:
        [float(cell) for cell in lead_names]
    except ValueError:
        pass
    else:
        raise DataError(f"{p}: the first row must name the leads (e.g. MLII,V5)")
    if not lead_names or any(not n for n in lead_names):
        raise DataError(f"{p}: the header row has an empty lead name")
    body = [row for row in rows[1:] if row]
    if not body:
        raise DataError(f"{p}: no samples after the header")
    for number, row in enumerate(body, start=2):
        if len(row) != len(lead_names):
            raise DataError(
                f"{p}: line {number} has {len(row)} values; the header names "
                f"{len(lead_names)} leads"
            )
    try:
        signal = np.array(body, dtype=np.float64)
    except ValueError:
        for number, row in enumerate(body, start=2):
            for cell in row:
                try:
                    float(cell)
                except ValueError:
                    raise DataError(f"{p}: line {number}: {cell[:20]!r} is not a number") from None
        raise
    if not np.isfinite(signal).all():
        line = int(np.flatnonzero(~np.isfinite(signal).all(axis=1))[0]) + 2
        raise DataError(f"{p}: line {line}: non-finite value")
    return Recording(name=name or p.stem, fs_hz=float(fs_hz), signal=signal, lead_names=lead_names)


def read_recording(path: str | Path, *, fs_hz: float | None = None) -> Recording:
    """A WFDB record, or a CSV signal when ``path`` ends in ``.csv`` (needs ``fs_hz``).

    Raises:
        DataError: as the readers, or a CSV without a sampling rate.
    """
    if str(path).lower().endswith(".csv"):
        if fs_hz is None:
            raise DataError(f"{path}: a CSV signal needs its sampling rate (--fs-hz)")
        return read_csv_signal(path, fs_hz)
    return read_wfdb(path)
