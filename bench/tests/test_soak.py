"""The soak's verdict (bench/soak.py) on sample series whose answer is known: flat and noisy series pass, a leak of
memory or of descriptors fails."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import soak


def series(rss, fds):
    return [
        {"t": 10 * (i + 1), "rss_kb": r, "fds": f, "cpu_pct": 50.0}
        for i, (r, f) in enumerate(zip(rss, fds, strict=True))
    ]


def test_a_flat_series_with_warmup_and_noise_passes():
    rss = [12_000] + [20_000 + (300 if i % 3 == 0 else 0) for i in range(17)]
    fds = [40] + [70 + i % 4 for i in range(17)]
    assert soak.verdict(series(rss, fds), warmup=1) == []


def test_steady_memory_growth_fails():
    rss = [20_000 + 400 * i for i in range(18)]  # 2.4 MiB a minute
    assert any("RSS grew" in f for f in soak.verdict(series(rss, [70] * 18), warmup=1))


def test_descriptor_growth_fails():
    fds = [70 + i for i in range(18)]  # one descriptor leaked every 10 s
    assert any("descriptors grew" in f for f in soak.verdict(series([20_000] * 18, fds), warmup=1))


def test_too_short_a_run_is_not_a_pass():
    assert soak.verdict(series([20_000] * 3, [70] * 3), warmup=1) != []


def test_slope_of_a_line_is_its_rate_per_minute():
    assert abs(soak.slope_per_minute([(t, 5 * t) for t in range(0, 100, 10)]) - 300) < 1e-9
