"""Flow-matching training throughput on two moons: physgen vs torchcfm, same velocity network.

Workload: 10,000 standardised two-moons points; velocity MLP on ``[cos πkt, sin πkt]_{k=1..3}``
then x, hidden [64, 64, 64] Tanh (9,026 parameters, one set of seed-0 weights in both);
straight (I-CFM, sigma = 0) path between N(0, I) and the data; Adam 1e-3, batch 512.
One warm-up round of 100 steps, then 5 interleaved rounds of 100 steps each.
Reported: training steps/s.

Run: ``python studies/benchmarks/flow_matching_bench.py [--threads 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_bench import interleaved, machine_load, print_table, two_moons, versions

from physgen.models.cnf import FlowMatching

BATCH, STEPS = 512, 100


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from torchcfm.conditional_flow_matching import ConditionalFlowMatcher

    data = two_moons()
    torch.manual_seed(0)
    ours = FlowMatching((2,), hidden=(64, 64, 64), act="tanh", freqs=3, path="linear")
    torch.manual_seed(0)
    peer_net = FlowMatching((2,), hidden=(64, 64, 64), act="tanh", freqs=3).net
    peer_net.load_state_dict(ours.net.state_dict())
    cfm = ConditionalFlowMatcher(sigma=0.0)

    def peer_loss(x1: Tensor) -> Tensor:
        x0 = torch.randn_like(x1)
        t, xt, ut = cfm.sample_location_and_conditional_flow(x0, x1)
        return (peer_net(xt, t) - ut).pow(2).mean()

    def stepper(params, loss_fn):
        opt = torch.optim.Adam(params, lr=1e-3)
        batches = torch.Generator().manual_seed(1)
        losses: list[float] = []

        def run() -> None:
            for _ in range(STEPS):
                x = data[torch.randint(0, data.shape[0], (BATCH,), generator=batches)]
                opt.zero_grad()
                loss = loss_fn(x)
                loss.backward()
                opt.step()
            losses.append(float(loss.detach()))

        return run, losses

    runs = {
        "physgen FlowMatching (linear path)": stepper(
            ours.parameters(), lambda x: ours.loss(x).mean()
        ),
        "torchcfm I-CFM": stepper(peer_net.parameters(), peer_loss),
    }
    print(f"# flow matching on two moons, batch {BATCH}; {versions('torchcfm')}")
    print(f"# threads {args.threads}; before: {machine_load()}")
    times = interleaved({n: r for n, (r, _) in runs.items()}, repeats=args.repeats, warmup=1)
    print(f"# after: {machine_load()}")
    rates = {n: [STEPS / t for t in ts] for n, ts in times.items()}
    peer = statistics.median(rates["torchcfm I-CFM"])
    rows = [
        {
            "implementation": n,
            "steps/s median": statistics.median(r),
            "min": min(r),
            "max": max(r),
            "last loss": round(runs[n][1][-1], 4),
            "rate / torchcfm": round(statistics.median(r) / peer, 3),
        }
        for n, r in rates.items()
    ]
    print_table(rows, list(rows[0]))


if __name__ == "__main__":
    main()
