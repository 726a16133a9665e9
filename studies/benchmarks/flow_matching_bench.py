"""Flow-matching training throughput on two moons: physgen vs torchcfm, same velocity network.

Workload: 10,000 standardised two-moons points; velocity MLP on ``[cos πkt, sin πkt]_{k=1..3}``
then x, hidden [64, 64, 64] Tanh (9,026 parameters, one set of seed-0 weights in all);
straight (sigma = 0) path between N(0, I) and the data; Adam 1e-3, batch 512. Pairings:

- independent (I-CFM) on both sides;
- physgen's ``coupling="ot"``: the exact optimal permutation of each minibatch (physgen's
  ``ot_pairing``), against torchcfm's ``ExactOptimalTransportConditionalFlowMatcher``,
  which solves the plan with POT's ``emd`` and then draws B pairs from it *with replacement*
  (a different estimator: some pairs repeat, others drop out);
- the same estimator on both sides: torchcfm's plan drawn *without* replacement (B distinct
  entries of a permutation plan: the exact permutation, solved by POT), and torchcfm's loss
  on physgen's ``ot_pairing`` (the same permutation and solver as physgen: only the rest of
  the step differs).

One warm-up call, then rounds of ``--steps`` training steps per contender
(``harness.run_rounds``: balanced order, wall and CPU time, physgen's speed over the peer's
paired per round).

``--data grf64`` runs the same on 64-D data (8×8 Gaussian random fields with spectrum
``|k|^-4``, flattened), where the assignment's cost is no longer the 2-D worst case.

Run: ``OMP_WAIT_POLICY=PASSIVE python studies/benchmarks/flow_matching_bench.py [--threads 1]
[--rounds 5] [--steps 50] [--data moons|grf64]``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_bench import grf2d, two_moons, versions
from harness import (
    Comparison,
    bench_parser,
    comparison_table,
    load_average,
    run_rounds,
    timing_table,
)

from physgen.models.cnf import FlowMatching, ot_pairing

BATCH = 512
INDEPENDENT, OT = "physgen, independent", "physgen, OT (exact permutation)"
PEER_I, PEER_OT = "torchcfm I-CFM", "torchcfm OT-CFM (POT plan, pairs drawn with replacement)"
PEER_PERM = "torchcfm OT-CFM (POT plan, drawn without replacement = exact permutation)"
PEER_OURS = "torchcfm CFM loss on physgen's ot_pairing"


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, rounds=5, steps=50)
    parser.add_argument(
        "--data",
        choices=("moons", "grf64"),
        default="moons",
        help="two moons (2-D) or 8×8 Gaussian random fields flattened to 64-D",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from torchcfm.conditional_flow_matching import (
        ConditionalFlowMatcher,
        ExactOptimalTransportConditionalFlowMatcher,
    )

    data = two_moons() if args.data == "moons" else grf2d(n=10_000, size=8).flatten(1)
    dim = data.shape[1]
    torch.manual_seed(0)
    ours = FlowMatching((dim,), hidden=(64, 64, 64), act="tanh", freqs=3, path="linear")
    ours_ot = FlowMatching((dim,), hidden=(64, 64, 64), act="tanh", freqs=3, coupling="ot")
    ours_ot.load_state_dict(ours.state_dict())

    def peer_net() -> nn.Module:
        net = FlowMatching((dim,), hidden=(64, 64, 64), act="tanh", freqs=3).net
        net.load_state_dict(ours.net.state_dict())
        return net

    def peer(pairs: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]):
        net, cfm = peer_net(), ConditionalFlowMatcher(0.0)

        def loss(x1: Tensor) -> Tensor:
            x0, x1 = pairs(torch.randn_like(x1), x1)
            t, xt, ut = cfm.sample_location_and_conditional_flow(x0, x1)
            return (net(xt, t) - ut).pow(2).mean()

        return net.parameters(), loss

    ot_cfm = ExactOptimalTransportConditionalFlowMatcher(0.0)

    def with_replacement(x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        return ot_cfm.ot_sampler.sample_plan(x0, x1, replace=True)

    def without_replacement(x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        return ot_cfm.ot_sampler.sample_plan(x0, x1, replace=False)

    def physgen_pairs(x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
        return x0[ot_pairing(x1, x0)], x1

    def stepper(params, loss_fn) -> Callable[[], None]:
        opt = torch.optim.Adam(params, lr=1e-3)
        batches = torch.Generator().manual_seed(1)

        def run() -> None:
            for _ in range(args.steps):
                x = data[torch.randint(0, data.shape[0], (BATCH,), generator=batches)]
                opt.zero_grad()
                loss_fn(x).backward()
                opt.step()

        return run

    runs = {
        INDEPENDENT: stepper(ours.parameters(), lambda x: ours.loss(x).mean()),
        PEER_I: stepper(*peer(lambda x0, x1: (x0, x1))),
        OT: stepper(ours_ot.parameters(), lambda x: ours_ot.loss(x).mean()),
        PEER_OT: stepper(*peer(with_replacement)),
        PEER_PERM: stepper(*peer(without_replacement)),
        PEER_OURS: stepper(*peer(physgen_pairs)),
    }
    rows = [
        Comparison(INDEPENDENT, PEER_I, "independent pairs"),
        Comparison(OT, PEER_OT, "**different estimators**: permutation vs plan draw"),
        Comparison(OT, PEER_PERM, "exact permutation; solvers differ (physgen's vs POT emd)"),
        Comparison(OT, PEER_OURS, "exact permutation, same solver (physgen's)"),
    ]
    where = "two moons" if args.data == "moons" else "8×8 GRFs as 64-D vectors"
    print(f"# flow matching on {where}, batch {BATCH}; {versions('torchcfm', 'pot', 'scipy')}")
    print(f"# threads {args.threads}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')}")
    load_start = load_average()
    times = run_rounds(runs, rounds=args.rounds, warmup=1)
    load_end = load_average()
    print(f"\n### seconds per {args.steps} training steps\n")
    print(timing_table(times, unit=f"s per {args.steps} steps"))
    print("\n### physgen against torchcfm, paired per round\n")
    print(comparison_table(times, rows, load_start, load_end))


if __name__ == "__main__":
    main()
