"""CNF maximum-likelihood training on two moons: physgen vs zuko and a plain torchdiffeq FFJORD.

Workload (same in every implementation): 10,000 standardised two-moons points; velocity MLP on
``[cos πkt, sin πkt]_{k=1..3}`` then x, hidden [64, 64, 64] Tanh, output 2 (9,026 parameters),
one set of seed-0 weights loaded into all; data at t=0, N(0, I) at t=1; dopri5 with
rtol = atol = 1e-5; exact trace or one Gaussian Hutchinson probe per solve; Adam 1e-3,
batch 512. Each comparison matches the gradient method and the trace estimator: zuko always
takes adjoint gradients from states saved at the forward's accepted steps, so physgen runs
its checkpoint adjoint (``adjoint=True``) against it; torchdiffeq's ``odeint_adjoint``
re-solves the continuous adjoint backwards, so physgen runs ``adjoint="backsolve"`` against it.
3 warm-up steps, then rounds of one training step per contender (``harness.run_rounds``:
balanced order, wall and CPU time, physgen's speed over the peer's paired per round).
Reported: seconds per step (log_prob + backward + Adam), NFE (velocity-MLP calls) per step
forward and backward, the loss after the last step, and the paired speed ratios.

Run: ``OMP_WAIT_POLICY=PASSIVE python studies/benchmarks/cnf_bench.py [--threads 1]
[--rounds 10]``.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torchdiffeq import odeint_adjoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_bench import NFECounter, two_moons, versions
from harness import (
    Comparison,
    bench_parser,
    comparison_table,
    load_average,
    run_rounds,
    timing_table,
)

from physgen.models.cnf import CNF

BATCH, TOL, WARMUP = 512, 1e-5, 3


class _Stepper:
    """One training step of a contender, with its own optimizer, batches and NFE counter."""

    def __init__(self, name: str, module: nn.Module, mlp: nn.Module,
                 nll: Callable[[Tensor], Tensor], data: Tensor) -> None:  # fmt: skip
        self.name, self.module, self.nll, self.data = name, module, nll, data
        self.counter = NFECounter(mlp)
        self.opt = torch.optim.Adam(module.parameters(), lr=1e-3)
        self.batches = torch.Generator().manual_seed(1)
        self.nfe_fwd: list[int] = []
        self.nfe_bwd: list[int] = []
        self.loss = math.nan

    def __call__(self) -> None:
        batch = self.data[torch.randint(0, self.data.shape[0], (BATCH,), generator=self.batches)]
        self.opt.zero_grad()
        start = self.counter.count
        loss = self.nll(batch)
        mid = self.counter.count
        loss.backward()
        self.opt.step()
        self.nfe_fwd.append(mid - start)
        self.nfe_bwd.append(self.counter.count - mid)
        self.loss = float(loss.detach())


class _FFJORD(nn.Module):
    """A plain torchdiffeq FFJORD (Grathwohl et al. 2019), as in its examples: state (x, Δlogp),
    trace by autograd, one probe per solve, adjoint gradients."""

    def __init__(self, mlp: nn.Module, exact: bool) -> None:
        super().__init__()
        self.mlp, self.exact = mlp, exact
        self.register_buffer("freqs", math.pi * torch.arange(1, 4, dtype=torch.float32))
        self.noise: Tensor | None = None

    def velocity(self, t: Tensor, x: Tensor) -> Tensor:
        feats = (self.freqs * t).expand(x.shape[0], 3)
        return self.mlp(torch.cat([feats.cos(), feats.sin(), x], dim=1))

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x = state[0]
        with torch.enable_grad():
            x = x.requires_grad_(True)
            v = self.velocity(t, x)
            if self.exact:
                div = sum(
                    torch.autograd.grad(v[:, i].sum(), x, create_graph=True)[0][:, i]
                    for i in range(x.shape[1])
                )
            else:
                e = self.noise
                div = (torch.autograd.grad(v, x, e, create_graph=True)[0] * e).sum(1)
        return v, div

    def nll(self, x: Tensor, adjoint: bool = True) -> Tensor:
        self.noise = None if self.exact else torch.randn_like(x)
        state = (x, torch.zeros(x.shape[0], device=x.device))
        times = torch.tensor([0.0, 1.0])
        if adjoint:
            z, div = odeint_adjoint(self, state, times, rtol=TOL, atol=TOL, method="dopri5",
                                    adjoint_params=tuple(self.mlp.parameters()))  # fmt: skip
        else:
            from torchdiffeq import odeint

            z, div = odeint(self, state, times, rtol=TOL, atol=TOL, method="dopri5")
        logp = -0.5 * z[-1].pow(2).sum(1) - math.log(2 * math.pi) + div[-1]
        return -logp.mean()


def _zuko(exact: bool) -> nn.Module:
    import zuko

    torch.manual_seed(0)
    return zuko.flows.CNF(2, freqs=3, atol=TOL, rtol=TOL, exact=exact,
                          hidden_features=[64, 64, 64], activation=nn.Tanh)  # fmt: skip


def _mlp_of_zuko(flow: nn.Module) -> nn.Module:
    return flow.transform.ode


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, rounds=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = two_moons()
    reference = _mlp_of_zuko(_zuko(True)).state_dict()

    def physgen(
        trace: str, probe: str, adjoint: bool | str
    ) -> tuple[nn.Module, nn.Module, Callable]:
        model = CNF((2,), hidden=(64, 64, 64), act="tanh", freqs=3, trace=trace, probe=probe,
                    rtol=TOL, atol=TOL, adjoint=adjoint)  # fmt: skip
        model.net.net.load_state_dict(reference)
        return model, model.net.net, lambda x: model.loss(x).mean()

    def zuko_flow(exact: bool) -> tuple[nn.Module, nn.Module, Callable]:
        flow = _zuko(exact)
        _mlp_of_zuko(flow).load_state_dict(reference)
        return flow, _mlp_of_zuko(flow), lambda x: -flow().log_prob(x).mean()

    def ffjord(exact: bool, adjoint: bool) -> tuple[nn.Module, nn.Module, Callable]:
        mlp = _mlp_of_zuko(_zuko(True))
        mlp.load_state_dict(reference)
        ref = _FFJORD(mlp, exact)
        return ref, mlp, lambda x: ref.nll(x, adjoint)

    builds = {
        "physgen, exact, checkpoint adjoint": lambda: physgen("exact", "rademacher", True),
        "physgen, Hutchinson Gaussian, checkpoint adjoint": (
            lambda: physgen("hutchinson", "gaussian", True)
        ),
        "physgen, exact, backsolve adjoint": lambda: physgen("exact", "rademacher", "backsolve"),
        "physgen, Hutchinson Gaussian, backsolve adjoint": (
            lambda: physgen("hutchinson", "gaussian", "backsolve")
        ),
        "physgen, exact, backprop": lambda: physgen("exact", "rademacher", False),
        "zuko, exact (adjoint)": lambda: zuko_flow(True),
        "zuko, Hutchinson Gaussian (adjoint)": lambda: zuko_flow(False),
        "torchdiffeq FFJORD, exact, adjoint": lambda: ffjord(True, True),
        "torchdiffeq FFJORD, Hutchinson Gaussian, adjoint": lambda: ffjord(False, True),
        "torchdiffeq, exact, backprop": lambda: ffjord(True, False),
    }
    checkpointed = (
        "adjoint from states saved at the forward's accepted steps (physgen: the discrete "
        "adjoint of each step; zuko: one dopri45 step of the adjoint ODE per forward step)"
    )
    backsolve = "continuous adjoint, re-solved backwards under error control (torchdiffeq's)"
    rows = [
        Comparison("physgen, exact, checkpoint adjoint", "zuko, exact (adjoint)",
                   f"exact trace; {checkpointed}"),
        Comparison("physgen, Hutchinson Gaussian, checkpoint adjoint",
                   "zuko, Hutchinson Gaussian (adjoint)",
                   f"one Gaussian probe per solve; {checkpointed}"),
        Comparison("physgen, exact, backsolve adjoint", "torchdiffeq FFJORD, exact, adjoint",
                   f"exact trace; {backsolve}"),
        Comparison("physgen, Hutchinson Gaussian, backsolve adjoint",
                   "torchdiffeq FFJORD, Hutchinson Gaussian, adjoint",
                   f"one Gaussian probe per solve; {backsolve}"),
        Comparison("physgen, exact, checkpoint adjoint", "torchdiffeq FFJORD, exact, adjoint",
                   "exact trace; **different adjoints**: physgen's checkpoint vs the backsolve"),
        Comparison("physgen, exact, backprop", "torchdiffeq, exact, backprop",
                   "exact trace, backpropagation through the solver"),
    ]  # fmt: skip
    steppers = {name: _Stepper(name, *build(), data) for name, build in builds.items()}
    print(f"# CNF on two moons, batch {BATCH}, dopri5 {TOL:g}; {versions('zuko', 'torchdiffeq')}")
    print(f"# threads {args.threads}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')}")
    load_start = load_average()
    times = run_rounds(steppers, rounds=args.rounds, warmup=WARMUP)
    load_end = load_average()
    print("\n### seconds per training step (log_prob + backward + Adam)\n")
    print(timing_table(times, unit="s per step"))
    print("\n### work per step (timed rounds) and loss after the last step\n")
    print("| contender | NFE forward | NFE backward | loss after |")
    print("|---|---:|---:|---:|")
    for name, s in steppers.items():
        fwd, bwd = statistics.mean(s.nfe_fwd[WARMUP:]), statistics.mean(s.nfe_bwd[WARMUP:])
        print(f"| {name} | {fwd:.1f} | {bwd:.1f} | {s.loss:.4f} |")
    print("\n### physgen against the peers, paired per round\n")
    print(comparison_table(times, rows, load_start, load_end))


if __name__ == "__main__":
    main()
