"""Two DDP processes (gloo, CPU) train to the same weights as one process.

Both runs use the same global batch; each DDP process takes half of it and DDP averages the
gradients, so in float64 the two trajectories agree to rounding. The slow test launches this
file under ``torchrun``; it also trains a two-player model (unused-parameter detection on) and
checks that both processes hold identical weights.
"""

from __future__ import annotations

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
from test_contract import _CondGaussian, _TinyGAN

from physgen.training import fit, read_checkpoint

STEPS, BATCH = 12, 16


def _data() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    x, cond = (
        torch.randn(101, 3, generator=g, dtype=torch.float64),
        torch.randn(101, 2, generator=g, dtype=torch.float64),
    )
    return (x[:64], cond[:64]), (x[64:], cond[64:])  # 37 validation samples: uneven shards


def train(directory: Path | None) -> torch.nn.Module:
    """The run under test (identical for one process and under torchrun)."""
    torch.manual_seed(0)
    model = _CondGaussian().double()
    train_data, valid_data = _data()
    fit(
        model,
        train_data,
        steps=STEPS,
        batch_size=BATCH,
        lr=0.05,
        schedule="cosine",
        grad_clip=5.0,
        ema_decay=0.8,
        valid_data=valid_data,
        valid_every=4,
        log_every=1,
        checkpoint_dir=directory,
        checkpoint_every=6,
        progress=False,
    )
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


def _forked_rank(rank: int, port: int, directory: Path) -> None:
    """One DDP process, configured through the environment exactly as torchrun does."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    try:
        train(directory)
    except BaseException:
        (directory.parent / f"rank{rank}.err").write_text(traceback.format_exc())
        os._exit(1)
    os._exit(0)  # skip the parent's (pytest's) exit handlers


def test_two_forked_processes_match_one(tmp_path: Path) -> None:
    """The fast variant: two forked processes joined through the torchrun environment."""
    # The single-process run first: the forked children then inherit its warm imports.
    single = train(tmp_path / "single")
    context = multiprocessing.get_context("fork")
    port = _free_port()
    ranks = [
        context.Process(target=_forked_rank, args=(r, port, tmp_path / "ddp")) for r in range(2)
    ]
    for p in ranks:
        p.start()
    for p in ranks:
        p.join(timeout=120)
    errors = "".join(f.read_text() for f in tmp_path.glob("rank*.err"))
    assert [p.exitcode for p in ranks] == [0, 0], errors
    _assert_matches_one_process(single, tmp_path / "ddp", tmp_path / "single")


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
    assert (tmp_path / "ddp" / "gan_ok").read_text() == "identical"


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    train(out)  # fit joins the process group torchrun describes
    # A second fit in the same processes reuses the group. A two-player model under DDP: both
    # processes must end with the same weights.
    torch.manual_seed(0)
    gan = _TinyGAN()
    fit(
        gan,
        torch.randn(64, 2, generator=torch.Generator().manual_seed(0)),
        steps=5,
        batch_size=BATCH,
        n_critic=2,
        progress=False,
    )
    flat = torch.cat([p.detach().flatten() for p in gan.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(2)]
    dist.all_gather(gathered, flat)
    if dist.get_rank() == 0:
        same = torch.equal(gathered[0], gathered[1])
        (out / "gan_ok").write_text("identical" if same else "different")
