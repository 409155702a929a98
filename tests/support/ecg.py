"""A synthetic two-lead ECG with known beats, written as a WFDB record for tests.

Self-contained (no data beside the repository): normal beats with P, QRS and T
waves at a varying rate, wide premature ventricular beats, baseline wander and
noise; the R peaks and their classes are known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FS_HZ = 360.0


@dataclass(frozen=True)
class SyntheticEcg:
    signal: np.ndarray  # (n, 2) mV: MLII, V1
    r_index: np.ndarray
    symbols: list[str]
    fs_hz: float = FS_HZ
    lead_names: tuple[str, str] = ("MLII", "V1")


def _bump(t: np.ndarray, centre_s: float, width_s: float, height: float) -> np.ndarray:
    return height * np.exp(-0.5 * ((t - centre_s) / width_s) ** 2)


def synthetic_ecg(duration_s: float = 60.0, seed: int = 0, pvc_every: int = 7) -> SyntheticEcg:
    """An ECG of ``duration_s`` with a premature ventricular beat every ``pvc_every`` beats."""
    rng = np.random.default_rng(seed)
    n = round(duration_s * FS_HZ)
    t = np.arange(n) / FS_HZ
    lead = np.zeros(n)
    r_times: list[float] = []
    symbols: list[str] = []
    at = 0.6
    beat = 0
    while at < duration_s - 0.6:
        beat += 1
        pvc = pvc_every > 0 and beat % pvc_every == 0
        if pvc:
            at -= 0.25  # premature
            lead += _bump(t, at, 0.030, 1.6) + _bump(t, at + 0.06, 0.04, -0.9)
            lead += _bump(t, at + 0.33, 0.07, -0.5)
            symbols.append("V")
        else:
            lead += _bump(t, at - 0.16, 0.025, 0.15)
            lead += _bump(t, at - 0.02, 0.008, -0.12) + _bump(t, at, 0.010, 1.2)
            lead += _bump(t, at + 0.025, 0.010, -0.3) + _bump(t, at + 0.30, 0.05, 0.3)
            symbols.append("N")
        r_times.append(at)
        at += (1.05 if pvc else 0.8) + 0.05 * rng.standard_normal()
    wander = 0.15 * np.sin(2 * np.pi * 0.2 * t)
    noise = 0.02 * rng.standard_normal(n)
    mlii = lead + wander + noise
    v1 = -0.6 * lead + 0.5 * wander + 0.02 * rng.standard_normal(n)
    return SyntheticEcg(
        signal=np.stack([mlii, v1], axis=1),
        r_index=np.round(np.asarray(r_times) * FS_HZ).astype(np.int64),
        symbols=symbols,
    )


def write_wfdb(ecg: SyntheticEcg, directory: Path, name: str = "syn1") -> Path:
    """Write ``ecg`` as WFDB ``name.hea/.dat/.atr`` in ``directory``; return the record path."""
    import wfdb

    directory.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        name,
        fs=ecg.fs_hz,
        units=["mV", "mV"],
        sig_name=list(ecg.lead_names),
        p_signal=ecg.signal,
        fmt=["212", "212"],
        adc_gain=[200.0, 200.0],
        baseline=[1024, 1024],
        write_dir=str(directory),
    )
    wfdb.wrann(name, "atr", ecg.r_index, symbol=ecg.symbols, write_dir=str(directory))
    return directory / name
