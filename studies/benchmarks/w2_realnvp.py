"""W2: RealNVP on a 64-point 1-D Gaussian random field, physgen vs zuko, nflows and normflows.

Model (identical in every library): 8 affine couplings with parity masks (layer i keeps the
features with index % 2 == i % 2 and transforms the other 32), conditioner MLP
32 -> 256 -> 256 -> 64 ReLU with default init, no permutations or normalisation, base
N(0, I); 725,504 parameters. Adam 1e-3, batch 256, 2,000 steps; test NLL on 5,000 held-out
fields against the exact Gaussian floor; sampling 10,000 at once.
Run: ``python studies/benchmarks/w2_realnvp.py [--threads 1]``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flows_bench import (
    Contender,
    grf1d,
    peer_versions,
    physgen_contender,
    run_workload,
    workload_args,
)

from physgen.models.flows import RealNVP

FEATURES, TRANSFORMS, HIDDEN = 64, 8, 256


def physgen_realnvp() -> Contender:
    torch.manual_seed(0)
    flow = RealNVP(features=FEATURES, transforms=TRANSFORMS, hidden=[HIDDEN, HIDDEN])
    return physgen_contender(flow)


def physgen_realnvp_zuko_init() -> Contender:
    """physgen's RealNVP started from zuko's seed-0 weights: the same function, so any NLL gap
    between the two rows above is the initial draw, not the model."""
    zuko_flow = zuko_realnvp().module
    c = physgen_realnvp()
    couplings = c.module.layers[1:]  # after the fixed even/odd permutation
    # Outputs: zuko interleaves (feature, param), physgen stacks (param, feature).
    half = FEATURES // 2
    rows = torch.tensor([i * 2 + q for q in range(2) for i in range(half)])
    with torch.no_grad():
        for layer, zt in zip(couplings, zuko_flow.transform.transforms, strict=True):
            ours = [m for m in layer.net if isinstance(m, nn.Linear)]
            theirs = [m for m in zt.hyper if hasattr(m, "weight")]  # zuko.nn.Linear
            for k, (lin, src) in enumerate(zip(ours, theirs, strict=True)):
                r = rows if k == len(ours) - 1 else slice(None)
                lin.weight.copy_(src.weight[r])
                lin.bias.copy_(src.bias[r])
    c.name = "physgen, zuko's init"
    return c


def zuko_realnvp() -> Contender:
    import zuko

    torch.manual_seed(0)
    flow = zuko.flows.RealNVP(features=FEATURES, transforms=TRANSFORMS,
                              hidden_features=[HIDDEN, HIDDEN])  # fmt: skip
    return Contender("zuko", flow, lambda x: -flow().log_prob(x).mean(),
                     lambda n: flow().sample((n,)), peer_versions()["zuko"])  # fmt: skip


class _ContextFree(nn.Module):
    """nflows calls its conditioner as ``net(x, context)``; a plain MLP needs this wrapper."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN),
                                 nn.ReLU(), nn.Linear(HIDDEN, n_out))  # fmt: skip

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.net(x)


def nflows_realnvp() -> Contender:
    from nflows.distributions import StandardNormal
    from nflows.flows import Flow
    from nflows.transforms import CompositeTransform
    from nflows.transforms.coupling import AffineCouplingTransform
    from nflows.utils import create_alternating_binary_mask

    torch.manual_seed(0)
    # nflows' mask marks the transformed features: layer i transforms index % 2 != i % 2.
    layers = [AffineCouplingTransform(create_alternating_binary_mask(FEATURES, even=i % 2 == 1),
                                      _ContextFree) for i in range(TRANSFORMS)]  # fmt: skip
    flow = Flow(CompositeTransform(layers), StandardNormal([FEATURES]))
    return Contender("nflows", flow, lambda x: -flow.log_prob(x).mean(), flow.sample,
                     peer_versions()["nflows"])  # fmt: skip


def normflows_realnvp() -> Contender:
    import normflows as nf

    torch.manual_seed(0)
    half = FEATURES // 2
    # 'checkerboard_inv' conditions on the even indices in 1-D.
    layers = [nf.flows.AffineCouplingBlock(
        nf.nets.MLP([half, HIDDEN, HIDDEN, 2 * half], init_zeros=False), scale=True,
        scale_map="exp", split_mode="checkerboard_inv" if i % 2 == 0 else "checkerboard")
        for i in range(TRANSFORMS)]  # fmt: skip
    flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(FEATURES, trainable=False),
                              layers)  # fmt: skip
    return Contender("normflows", flow, lambda x: -flow.log_prob(x).mean(),
                     lambda n: flow.sample(n)[0], peer_versions()["normflows"])  # fmt: skip


BUILDERS = {"physgen": physgen_realnvp, "zuko": zuko_realnvp, "nflows": nflows_realnvp,
            "normflows": normflows_realnvp,
            "physgen-zuko-init": physgen_realnvp_zuko_init}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = workload_args(argv, __doc__, BUILDERS)
    train, test, floor = grf1d()
    print(f"W2 exact Gaussian NLL floor of the test set: {floor:.2f} nats per field")
    contenders = [BUILDERS[name]() for name in args.libraries]
    run_workload("W2-realnvp", contenders, train, test, batch=256, steps=args.steps,
                 extra={"nll_floor": floor, "nproc": os.cpu_count()}, out=args.out)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
