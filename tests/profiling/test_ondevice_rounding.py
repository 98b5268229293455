"""The on-device script quantizes inputs exactly as the runtimes' sessions do (half away from zero)."""

import numpy as np

from edgekit.profile import ondevice
from edgekit.runtimes.base import quantize


def test_prepare_rounds_like_the_session():
    scale, zero_point = 0.5, 0
    # halfway cases: np.round would send 0.25/0.5 = 0.5 to 0 and 1.25/0.5 = 2.5 to 2
    images = np.array([0.25, 1.25, -0.25, -1.25, 0.75, 63.9, -70.0], dtype=np.float32).reshape(1, 7, 1, 1)
    spec = ((1, 7, 1, 1), np.dtype(np.int8), (scale, zero_point))
    on_device = ondevice.prepare(images, spec)
    in_session = quantize(images, (scale, zero_point), np.dtype(np.int8))
    assert on_device.dtype == np.int8
    np.testing.assert_array_equal(on_device, in_session)
    assert on_device.ravel()[:4].tolist() == [1, 3, -1, -3]  # np.round would give 0, 2, 0, -2
