"""Model calls are padded to a few batch sizes; the beats' scores do not depend on it."""

from __future__ import annotations

import numpy as np
import pytest

from beatwatch.scoring import MAX_CHUNK, padded_rows


def test_every_batch_size_maps_to_one_of_few_sizes_at_least_as_large() -> None:
    sizes = {padded_rows(n) for n in range(1, MAX_CHUNK + 1)}
    assert len({padded_rows(n) for n in range(1, 1001)}) == 22
    assert len(sizes) == 37
    assert all(padded_rows(n) >= n for n in range(MAX_CHUNK + 1))
    assert padded_rows(0) == 0 and padded_rows(1) == 1 and padded_rows(1000) == 1024


@pytest.mark.tensorflow
@pytest.mark.subprocess  # importing TensorFlow runs `uname -p`
def test_padding_leaves_each_beats_score_unchanged() -> None:
    from beatwatch.artifact import SHIPPED_MODEL_DIR, load_artifact
    from beatwatch.data import load_ecg5000

    scorer = load_artifact(SHIPPED_MODEL_DIR).scorer()
    beats = np.asarray(load_ecg5000().x[:300], np.float32)
    whole_scores, whole_errors = scorer.score(beats[:256])  # 256: no padding
    for n in (1, 3, 65, 200):
        scores, errors = scorer.score(beats[:n])
        assert scores.shape == (n,) and errors.shape == (n, beats.shape[1])
        np.testing.assert_allclose(scores, whole_scores[:n], rtol=1e-5)
        np.testing.assert_allclose(errors, whole_errors[:n], rtol=1e-4, atol=1e-7)
