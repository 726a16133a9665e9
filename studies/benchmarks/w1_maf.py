"""W1: MAF density training on 10-d data, physgen vs zuko, nflows and normflows side by side.

Model (identical in every library): 5 affine autoregressive transforms, MADE hidden
[128, 128] ReLU, sequential degrees, feature order reversed between transforms, base N(0, I);
102,500 parameters. Adam 1e-3, batch 512, 2,000 steps; test NLL on 5,000 held-out points;
sampling 10,000 at once. Run: ``python studies/benchmarks/w1_maf.py [--threads 1]``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flows_bench import (
    Contender,
    maf10,
    peer_versions,
    physgen_contender,
    run_workload,
    workload_args,
)

from physgen.models.flows import MAF

FEATURES, TRANSFORMS, HIDDEN = 10, 5, 128


def physgen_maf() -> Contender:
    torch.manual_seed(0)
    flow = MAF(features=FEATURES, transforms=TRANSFORMS, hidden=[HIDDEN, HIDDEN])
    return physgen_contender(flow)


def physgen_maf_zuko_init() -> Contender:
    """physgen's MAF started from zuko's seed-0 weights: the same function, so the NLL gap
    between the two rows above is the initial draw, not the model."""
    zuko_flow = zuko_maf().module
    c = physgen_maf()
    with torch.no_grad():
        for layer, zt in zip(c.module.layers, zuko_flow.transform.transforms, strict=True):
            ours = [m for m in layer.made.net if isinstance(m, torch.nn.Linear)]
            theirs = [m for m in zt.hyper if isinstance(m, torch.nn.Linear)]
            # Hidden units: zuko cycles through the degree groups, physgen sorts them.
            seen = theirs[0].mask[:, :FEATURES].float()
            p1 = torch.sort(seen.sum(-1), stable=True).indices
            seen = (theirs[1].mask.float() @ seen > 0).float()
            p2 = torch.sort(seen.sum(-1), stable=True).indices
            # Outputs: zuko interleaves (feature, param), physgen stacks (param, feature).
            rows = torch.tensor([i * 2 + q for q in range(2) for i in range(FEATURES)])
            for lin, src, r, col in zip(ours, theirs, (p1, p2, rows), (None, p1, p2),
                                        strict=True):  # fmt: skip
                w = src.weight[r] if col is None else src.weight[r][:, col]
                lin.weight.copy_(w)
                lin.bias.copy_(src.bias[r])
    c.name = "physgen, zuko's init"
    return c


def zuko_maf() -> Contender:
    import zuko

    torch.manual_seed(0)
    flow = zuko.flows.MAF(features=FEATURES, transforms=TRANSFORMS,
                          hidden_features=[HIDDEN, HIDDEN])  # fmt: skip
    return Contender("zuko", flow, lambda x: -flow().log_prob(x).mean(),
                     lambda n: flow().sample((n,)), peer_versions()["zuko"])  # fmt: skip


def nflows_maf() -> Contender:
    from nflows.distributions import StandardNormal
    from nflows.flows import Flow
    from nflows.transforms import CompositeTransform, ReversePermutation
    from nflows.transforms.autoregressive import MaskedAffineAutoregressiveTransform

    torch.manual_seed(0)
    layers = []
    for i in range(TRANSFORMS):
        if i:
            layers.append(ReversePermutation(FEATURES))
        layers.append(MaskedAffineAutoregressiveTransform(
            features=FEATURES, hidden_features=HIDDEN, num_blocks=1,
            use_residual_blocks=False, activation=F.relu))  # fmt: skip
    flow = Flow(CompositeTransform(layers), StandardNormal([FEATURES]))
    return Contender("nflows", flow, lambda x: -flow.log_prob(x).mean(), flow.sample,
                     peer_versions()["nflows"])  # fmt: skip


def normflows_maf() -> Contender:
    import normflows as nf

    torch.manual_seed(0)
    layers = []
    for i in range(TRANSFORMS):
        if i:
            rev = nf.flows.Permute(FEATURES, mode="shuffle")
            rev.perm.copy_(torch.arange(FEATURES - 1, -1, -1))
            rev.inv_perm.copy_(torch.arange(FEATURES - 1, -1, -1))
            layers.append(rev)
        # Reverse(...) puts the one-pass MADE in the density direction (MAF cost profile).
        layers.append(nf.flows.Reverse(nf.flows.MaskedAffineAutoregressive(
            FEATURES, HIDDEN, num_blocks=1, use_residual_blocks=False)))  # fmt: skip
    flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(FEATURES, trainable=False),
                              layers)  # fmt: skip
    return Contender("normflows", flow, lambda x: -flow.log_prob(x).mean(),
                     lambda n: flow.sample(n)[0], peer_versions()["normflows"])  # fmt: skip


BUILDERS = {"physgen": physgen_maf, "zuko": zuko_maf, "nflows": nflows_maf,
            "normflows": normflows_maf, "physgen-zuko-init": physgen_maf_zuko_init}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = workload_args(argv, __doc__, BUILDERS)
    train, test = maf10()
    contenders = [BUILDERS[name]() for name in args.libraries]
    run_workload("W1-maf", contenders, train, test, batch=512, steps=args.steps,
                 extra={"nproc": os.cpu_count()}, out=args.out)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
