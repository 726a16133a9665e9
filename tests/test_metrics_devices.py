"""Every metric runs on the inputs' device, accumulates in float64 and agrees with the CPU."""

from __future__ import annotations

import torch

from physgen import metrics


def test_metrics_agree_across_devices(device: torch.device) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 12, 10, generator=gen, dtype=torch.float64)
    y = torch.randn(40, 12, 10, generator=gen, dtype=torch.float64) + 0.2
    members = torch.randn(6, 40, 12, 10, generator=gen, dtype=torch.float64)
    calls = {
        "relative_l2": lambda a, b, m: metrics.relative_l2(a, b),
        "vrmse": lambda a, b, m: metrics.vrmse(a, b),
        "binned": lambda a, b, m: metrics.binned_spectral_error(a, b, spatial_dims=2),
        "spectrum": lambda a, b, m: metrics.energy_spectrum(a, spatial_dims=2, window="hann")[1],
        "correlation": lambda a, b, m: metrics.two_point_correlation(
            a, spatial_dims=2, periodic=False
        )[1],
        "mmd": lambda a, b, m: metrics.mmd(a, b),
        "mmd_test": lambda a, b, m: metrics.mmd_permutation_test(a, b, num_permutations=20)[0],
        "sw": lambda a, b, m: metrics.sliced_wasserstein(a, b, num_projections=50),
        "w1": lambda a, b, m: metrics.marginal_w1(a, b),
        "fd": lambda a, b, m: metrics.frechet_distance(a, b, num_components=4),
        "floor": lambda a, b, m: metrics.with_floor(metrics.energy_distance, a, b)["floor"],
        "crps": lambda a, b, m: metrics.crps_fair(m, b),
        "ssr": lambda a, b, m: metrics.spread_skill_ratio(m, b),
        "rank": lambda a, b, m: metrics.rank_histogram(m, b),
        "es": lambda a, b, m: metrics.energy_score(m, b),
        "bpd": lambda a, b, m: metrics.bits_per_dim(a.sum((1, 2)), 120, bins=256),
    }
    for name, fn in calls.items():
        on_device = fn(x.to(device), y.to(device), members.to(device))
        on_cpu = fn(x, y, members)
        assert on_device.device.type == device.type, name
        torch.testing.assert_close(on_device.cpu(), on_cpu, msg=name)
        # float32 inputs are promoted: float64 results equal to float32 input precision.
        single = fn(x.float().to(device), y.float().to(device), members.float().to(device))
        assert single.dtype == torch.float64, name
        torch.testing.assert_close(single.cpu(), on_cpu, rtol=1e-5, atol=1e-6, msg=name)
