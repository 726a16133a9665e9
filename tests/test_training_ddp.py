"""Two DDP processes (gloo, CPU) train to the same weights as one process.

Both runs use the same global batch; each DDP process takes half of it and DDP averages the
gradients, so in float64 the two trajectories agree to rounding. Besides a conditional
Gaussian, a real GAN with two optimizers (two critic steps per generator step, spectral
norm, unused-parameter detection on) is compared with one process; its latents are a fixed
function of each real sample, so half a batch draws what the whole batch draws for those
samples. The slow test launches this file under ``torchrun``.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from test_contract import _CondGaussian

from physgen.models import ebm
from physgen.models.flows_glow import Glow
from physgen.models.gan import GAN
from physgen.training import fit, read_checkpoint

STEPS, BATCH = 12, 16
EBM_STEPS = 10


def _data() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    x, cond = (
        torch.randn(101, 3, generator=g, dtype=torch.float64),
        torch.randn(101, 2, generator=g, dtype=torch.float64),
    )
    return (x[:64], cond[:64]), (x[64:], cond[64:])  # 37 validation samples: uneven shards


class _KeyedGAN(GAN):
    r"""A GAN whose latent for each real sample is a fixed function of that sample.

    :math:`z_i = \sin(s + 7 W x_i)` with a fixed :math:`W` and a salt :math:`s` per loss:
    a process holding half of a batch then draws exactly the latents the whole batch gives
    those samples. (Random latents are drawn per process, so a DDP run and a one-process run
    of a plain GAN use different noise and cannot be compared to rounding.)
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.pending: torch.Tensor | None = None

    def _key(self, x: torch.Tensor, salt: float) -> None:
        n = x[0].numel()
        w = torch.linspace(-1.0, 1.0, self.latent_dim * n, dtype=x.dtype).reshape(-1, n)
        self.pending = torch.sin(salt + 7.0 * x.flatten(1) @ w.to(x.device).T)

    def latent(
        self, n: int, device: torch.device, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        z, self.pending = self.pending, None
        return super().latent(n, device, generator) if z is None else z

    def discriminator_loss(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        self._key(x, 0.0)
        return super().discriminator_loss(x, cond)

    def generator_loss(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        self._key(x, 1.0)
        return super().generator_loss(x, cond)


def _fit_settings(directory: Path | None) -> dict:
    """Everything but the model and data, shared by the runs compared with one process."""
    return dict(
        steps=STEPS,
        batch_size=BATCH,
        schedule="cosine",
        grad_clip=5.0,
        ema_decay=0.8,
        valid_every=4,
        log_every=1,
        checkpoint_dir=directory,
        checkpoint_every=6,
        progress=False,
    )


def train_gan(directory: Path | None, batch_size: int = BATCH) -> torch.nn.Module:
    """A real two-player run (identical for one process and under torchrun)."""
    torch.manual_seed(0)
    model = _KeyedGAN([3], latent_dim=2, hidden=[8], n_critic=2, spectral_norm=True).double()
    (x, _), (valid, _) = _data()
    settings = {**_fit_settings(directory), "batch_size": batch_size}
    fit(model, x, lr=0.01, critic_lr=0.02, valid_data=valid, **settings)
    return model


def train(directory: Path | None) -> torch.nn.Module:
    """The run under test (identical for one process and under torchrun)."""
    torch.manual_seed(0)
    model = _CondGaussian().double()
    train_data, valid_data = _data()
    fit(model, train_data, lr=0.05, valid_data=valid_data, **_fit_settings(directory))
    return model


def _records(path: Path) -> list[dict]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records:
        record.pop("samples_per_s", None)
    return records


def _assert_matches_one_process(single: torch.nn.Module, directory: Path, single_dir: Path) -> None:
    ddp = read_checkpoint(directory / "checkpoint.pt")
    assert ddp["step"] == STEPS and ddp["fit"]["world_size"] == 2
    assert len(ddp["rng"]) == 2  # both processes' generator states, for an exact resume
    for key, value in single.state_dict().items():
        torch.testing.assert_close(ddp["model_state"][key], value, rtol=0, atol=1e-12)
    reference = read_checkpoint(single_dir / "checkpoint.pt")
    for key, value in reference["ema_state"].items():
        torch.testing.assert_close(ddp["ema_state"][key], value, rtol=0, atol=1e-12)
    # Every player's optimizer: Adam's moments and step counts.
    assert ddp["optimizers"].keys() == reference["optimizers"].keys()
    for method, saved in reference["optimizers"].items():
        torch.testing.assert_close(
            ddp["optimizers"][method]["state"], saved["state"], rtol=1e-10, atol=1e-14, msg=method
        )
    # Rank 0 alone wrote the log; losses and sharded validation losses match one process.
    ddp_log, single_log = _records(directory / "log.jsonl"), _records(single_dir / "log.jsonl")
    assert [r["step"] for r in ddp_log] == [r["step"] for r in single_log]
    for a, b in zip(ddp_log, single_log, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-10, abs=1e-12), key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _forked_rank(rank: int, port: int, directory: Path, run=None) -> None:
    """One DDP process, configured through the environment exactly as torchrun does."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    try:
        (run or train)(directory)
    except BaseException:
        (directory.parent / f"rank{rank}.err").write_text(traceback.format_exc())
        os._exit(1)
    os._exit(0)  # skip the parent's (pytest's) exit handlers


def _fork_two_ranks(tmp_path: Path, run=None) -> None:
    context = multiprocessing.get_context("fork")
    port = _free_port()
    ranks = [
        context.Process(target=_forked_rank, args=(r, port, tmp_path / "ddp", run))
        for r in range(2)
    ]
    for p in ranks:
        p.start()
    for p in ranks:
        p.join(timeout=120)
    errors = "".join(f.read_text() for f in tmp_path.glob("rank*.err"))
    assert [p.exitcode for p in ranks] == [0, 0], errors


def test_two_forked_processes_match_one(tmp_path: Path) -> None:
    """The fast variant: two forked processes joined through the torchrun environment."""
    # The single-process run first: the forked children then inherit its warm imports.
    single = train(tmp_path / "single")
    _fork_two_ranks(tmp_path)
    _assert_matches_one_process(single, tmp_path / "ddp", tmp_path / "single")


def train_glow(directory: Path) -> torch.nn.Module:
    """A Glow whose ActNorm layers initialise themselves from the first batch they see."""
    torch.manual_seed(0)
    model = Glow(shape=[1, 4, 4], levels=2, steps=1, checker_steps=2, hidden=4).double()
    g = torch.Generator().manual_seed(5)
    # Off-centre, non-unit-scale data, so the data-dependent initialisation matters.
    data = 3.0 + 2.0 * torch.randn(64, 1, 4, 4, generator=g, dtype=torch.float64)
    # SGD: Adam's division by sqrt(v) would magnify rounding in near-zero gradients.
    fit(model, data, steps=4, batch_size=BATCH, optimizer="sgd", lr=1e-2,
        checkpoint_dir=directory, log_every=1, progress=False)  # fmt: skip
    return model


def test_actnorm_initialises_from_the_global_first_batch(tmp_path: Path) -> None:
    """Under DDP every rank initialises ActNorm from the whole first batch, not its slice."""
    single = train_glow(tmp_path / "single")
    _fork_two_ranks(tmp_path, train_glow)
    ddp = read_checkpoint(tmp_path / "ddp" / "checkpoint.pt")["model_state"]
    norms = [k for k in ddp if k.endswith("log_scale")]
    assert norms and all(bool(ddp[k.replace("log_scale", "initialized")]) for k in norms)
    for key, value in single.state_dict().items():
        torch.testing.assert_close(ddp[key], value, rtol=0, atol=1e-10, msg=key)


def test_two_forked_processes_train_a_gan_as_one(tmp_path: Path) -> None:
    """A GAN's two players, each with its own optimizer, train under DDP as in one process."""
    single = train_gan(tmp_path / "single")
    _fork_two_ranks(tmp_path, train_gan)
    _assert_matches_one_process(single, tmp_path / "ddp", tmp_path / "single")
    # Negative control: one process training on the half batch a rank holds does not match.
    half = train_gan(None, batch_size=BATCH // 2).state_dict()
    ddp = read_checkpoint(tmp_path / "ddp" / "checkpoint.pt")["model_state"]
    assert (
        max(float((ddp[k] - v).abs().max()) for k, v in half.items() if v.is_floating_point())
        > 1e-6
    )


def train_ebm(directory: Path, share: bool = True) -> torch.nn.Module:
    """An EBM on a replay buffer large enough that its chains seldom collide; each process
    saves its buffer (``share=False`` keeps each process's chains to itself)."""
    if not share:
        ebm._from_every_process = lambda *tensors: tensors  # in this forked process only
    torch.manual_seed(0)
    model = ebm.EBM([3], hidden=[8], buffer_size=2_000, reinit_prob=0.0, langevin_steps=2)
    (x, _), _ = _data()
    fit(model.double(), x, steps=EBM_STEPS, batch_size=BATCH, checkpoint_dir=directory,
        log_every=EBM_STEPS, progress=False)  # fmt: skip
    torch.save(model.replay, directory / f"replay{dist.get_rank()}.pt")
    return model


def _replays(directory: Path) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each process's replay buffer after training, and the buffer before."""
    torch.manual_seed(0)
    start = ebm.EBM([3], hidden=[8], buffer_size=2_000).replay.double()
    return [torch.load(directory / f"replay{r}.pt", weights_only=True) for r in range(2)], start


def test_ebm_chains_of_every_process_persist(tmp_path: Path) -> None:
    """Under DDP each process refines half of every batch's negatives; all of them go back
    into the replay buffer, as in one process (DDP's broadcast of rank 0's buffers at each
    forward would otherwise leave only rank 0's, at most half of them)."""
    own = EBM_STEPS * BATCH // 2  # the most chains one process refines
    _fork_two_ranks(tmp_path, train_ebm)
    (first, second), start = _replays(tmp_path / "ddp")
    assert torch.equal(first, second)
    assert int((first != start).any(1).sum()) > own
    # Negative control: processes that keep their chains to themselves. Rank 0's buffer,
    # broadcast at every forward, then holds rank 0's chains only.
    _fork_two_ranks(tmp_path / "unshared", functools.partial(train_ebm, share=False))
    (first, second), start = _replays(tmp_path / "unshared" / "ddp")
    assert int((first != start).any(1).sum()) <= own


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path: Path) -> None:
    """The real launcher: ``torchrun --standalone --nproc_per_node=2`` on this file."""
    tests = Path(__file__).parent
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests)]),
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        __file__,
        str(tmp_path / "ddp"),
    ]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    single = train(tmp_path / "single")
    _assert_matches_one_process(single, tmp_path / "ddp", tmp_path / "single")
    gan = train_gan(tmp_path / "single_gan")
    _assert_matches_one_process(gan, tmp_path / "ddp" / "gan", tmp_path / "single_gan")
    assert (tmp_path / "ddp" / "gan_ok").read_text() == "identical"


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    train(out)  # fit joins the process group torchrun describes
    # A second fit in the same processes reuses the group: a two-player model, compared with
    # one process by the test; both processes must also end with the same weights.
    gan = train_gan(out / "gan")
    flat = torch.cat([p.detach().flatten() for p in gan.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(2)]
    dist.all_gather(gathered, flat)
    if dist.get_rank() == 0:
        same = torch.equal(gathered[0], gathered[1])
        (out / "gan_ok").write_text("identical" if same else "different")
