import numpy as np
import pytest

from ditto_triton.streaming.audio import (
    HOP_SAMPLES,
    PAST_SAMPLES,
    WINDOW_SAMPLES,
    AudioChunker,
    features_from_encoding,
    frames_for_samples,
)


def windows_for(audio, chunk):
    c = AudioChunker()
    out = []
    for i in range(0, audio.size, chunk):
        out += c.push(audio[i : i + chunk])
    return out + c.flush(), c


@pytest.mark.parametrize("n", [1, 639, 640, 641, 3200, 16000, 16000 * 3 + 17])
def test_windows_cover_every_frame_exactly(n):
    audio = np.arange(1, n + 1, dtype=np.float32)
    windows, chunker = windows_for(audio, 1000)
    assert len(windows) == -(-frames_for_samples(n) // 5)
    padded = np.concatenate([np.zeros(PAST_SAMPLES, np.float32), audio, np.zeros(WINDOW_SAMPLES * 2, np.float32)])
    for k, w in enumerate(windows):
        assert w.shape == (WINDOW_SAMPLES,)
        np.testing.assert_array_equal(w, padded[k * HOP_SAMPLES : k * HOP_SAMPLES + WINDOW_SAMPLES])


def test_chunk_size_does_not_change_the_windows():
    audio = np.random.default_rng(0).normal(size=23456).astype(np.float32)
    a, _ = windows_for(audio, 1)
    b, _ = windows_for(audio, 3200)
    c, _ = windows_for(audio, 23456)
    assert len(a) == len(b) == len(c)
    for x, y, z in zip(a, b, c):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)


def test_window_is_emitted_once_two_future_frames_arrived():
    c = AudioChunker()
    assert c.push(np.zeros(WINDOW_SAMPLES - PAST_SAMPLES - 1, np.float32)) == []
    assert len(c.push(np.zeros(1, np.float32))) == 1


def test_frame_count_rule():
    assert [frames_for_samples(n) for n in (0, 1, 640, 641, 16000)] == [0, 1, 1, 2, 25]


def test_features_keep_the_current_rows_averaged_in_pairs():
    enc = np.arange(20 * 2, dtype=np.float32).reshape(20, 2)
    feats = features_from_encoding(enc)
    assert feats.shape == (5, 2)
    np.testing.assert_allclose(feats[0], enc[6:8].mean(0))
    np.testing.assert_allclose(feats[4], enc[14:16].mean(0))
