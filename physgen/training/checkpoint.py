"""Checkpoints that hold only tensors and plain data: atomic writes, safe loads, RNG states.

Every checkpoint carries a SHA-256 digest of its contents (entry ``sha256``, over a canonical
encoding of every other entry: tensors by dtype, shape and bytes, plain data by type and
value), verified on reading, so a file damaged on disk or in transfer is refused instead of
loading with wrong weights. Checkpoints written before digests existed load unverified.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from physgen.data.atomic import atomic_output, sweep_temporaries
from physgen.models.base import GenerativeModel, get_model_class, registered_name

__all__ = [
    "DIGEST_KEY",
    "FORMAT",
    "CheckpointIntegrityError",
    "build_model",
    "checkpoint_paths",
    "contents_digest",
    "get_rng_state",
    "load_checkpoint",
    "model_entries",
    "read_checkpoint",
    "read_newest_valid",
    "registry_name",
    "save_checkpoint",
    "set_rng_state",
]

FORMAT = "physgen-checkpoint/1"
DIGEST_KEY = "sha256"


class CheckpointIntegrityError(ValueError):
    """A checkpoint's contents do not match the SHA-256 digest written with them."""


_PLAIN = (str, int, float, bool, type(None), Tensor)

# How torch's weights-only unpickler names a refused global: "Unsupported global: GLOBAL x.y"
# (torch < 2.6 and non-blocked modules) or "Trying to load unsupported GLOBAL x.y whose
# module x is blocked" (blocked modules such as os, posix, subprocess).
_BLOCKED_GLOBAL = re.compile(r"(?:Unsupported global:|unsupported) GLOBAL ([\w.]*\w)")


def _check_plain(value: Any, where: str) -> None:
    """Refuse anything ``torch.load(weights_only=True)`` could not read back."""
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"checkpoint entry {where} has a non-str/int key {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(
        f"checkpoint entry {where} is a {type(value).__name__}; checkpoints hold only tensors, "
        "numbers, strings, None and lists/dicts of them"
    )


def _feed(digest: Any, value: Any) -> None:
    """Add ``value`` to ``digest`` in a canonical, unambiguous encoding (type, size, content)."""
    if isinstance(value, Tensor):
        t = value.detach().cpu().contiguous()
        digest.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}|".encode())
        for key in sorted(value, key=lambda k: (type(k).__name__, str(k))):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}|".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        digest.update(f"S{len(data)}|".encode() + data)
    elif isinstance(value, bool) or value is None:
        digest.update(f"{value}|".encode())
    elif isinstance(value, int):
        digest.update(f"I{value}|".encode())
    elif isinstance(value, float):
        digest.update(f"F{value.hex()}|".encode())
    else:  # _check_plain admits nothing else
        raise TypeError(f"cannot digest a {type(value).__name__}")


def contents_digest(contents: dict[str, Any]) -> str:
    """The SHA-256 (hex) of every entry of ``contents`` except the digest itself."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in contents.items() if k != DIGEST_KEY})
    return digest.hexdigest()


def checkpoint_paths(path: str | Path, keep: int) -> list[Path]:
    """``path`` and the names of its ``keep - 1`` predecessors, newest first.

    ``checkpoint.pt``, ``checkpoint.prev.pt``, ``checkpoint.prev2.pt``, ...
    """
    path = Path(path)
    names = [path.name] + [
        f"{path.stem}.prev{'' if i == 1 else i}{path.suffix}" for i in range(1, keep)
    ]
    return [path.with_name(name) for name in names]


def _keep_previous(paths: list[Path]) -> None:
    """Shift the kept checkpoints one place older; the newest stays at ``paths[0]``.

    The newest is linked (or copied) to its backup name, never moved, so ``paths[0]`` exists
    until the new checkpoint replaces it.
    """
    for i in range(len(paths) - 1, 1, -1):
        if paths[i - 1].exists():
            os.replace(paths[i - 1], paths[i])
    if len(paths) < 2 or not paths[0].exists():
        return
    with atomic_output(paths[1]) as tmp:
        tmp.unlink()
        try:
            os.link(paths[0], tmp)
        except OSError:  # a file system without hard links
            shutil.copyfile(paths[0], tmp)


def save_checkpoint(path: str | Path, contents: dict[str, Any], *, keep: int = 1) -> Path:
    """Write ``contents`` with their SHA-256 digest to ``path`` atomically.

    The file is written to a temporary name, flushed to disk and renamed over ``path``, so a
    crash or kill during the write leaves the previous file at ``path`` intact. Everything
    in ``contents`` must be a tensor or plain data, so the file loads with
    ``torch.load(weights_only=True)``; anything else raises ``TypeError`` before writing.
    With ``keep > 1`` the previous checkpoints are kept as ``<stem>.prev<suffix>``,
    ``<stem>.prev2<suffix>``, ... (see :func:`checkpoint_paths`). Temporary files of these
    names that a process killed while writing left behind are removed first.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (checkpoints kept), got {keep}")
    _check_plain(contents, "checkpoint")
    names = {p.name for p in checkpoint_paths(path, keep)}
    sweep_temporaries(Path(path).parent, names.__contains__)  # left by a run killed mid-write
    full = {"format": FORMAT, **{k: v for k, v in contents.items() if k != DIGEST_KEY}}
    full[DIGEST_KEY] = contents_digest(full)
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as file:
            torch.save(full, file)
        _keep_previous(checkpoint_paths(path, keep))
    return Path(path)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a physgen checkpoint with ``torch.load(weights_only=True)`` and verify its digest.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointIntegrityError: the contents do not match their SHA-256 digest.
        ValueError: the file is not a physgen checkpoint, is truncated, or carries pickled
            Python objects (which could run arbitrary code when unpickled, so are refused).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        contents = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = _BLOCKED_GLOBAL.search(str(err))
        if found is None:
            raise ValueError(f"{path}: not a readable checkpoint (corrupt or truncated)") from None
        raise ValueError(
            f"{path}: refusing to load: the checkpoint contains code (GLOBAL {found.group(1)}) "
            "and was not loaded; a physgen checkpoint holds only tensors and plain data, and "
            "unpickling anything else could run arbitrary code"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"{path}: not a readable checkpoint ({err})") from None
    if not isinstance(contents, dict) or contents.get("format") != FORMAT:
        found = contents.get("format") if isinstance(contents, dict) else type(contents).__name__
        raise ValueError(f"{path}: not a {FORMAT} file (format: {found!r})")
    _verify(path, contents)
    return contents


def _verify(path: Path, contents: dict[str, Any]) -> None:
    """Check (and remove) the digest entry; a checkpoint from before digests passes."""
    expected = contents.pop(DIGEST_KEY, None)
    if expected is None:
        return
    actual = contents_digest(contents)
    if actual != expected:
        previous = checkpoint_paths(path, 2)[1]
        hint = f"; the previous checkpoint {previous} may be intact" if previous.is_file() else ""
        raise CheckpointIntegrityError(
            f"{path}: damaged checkpoint, not loaded: its contents have SHA-256 {actual[:16]}…, "
            f"not the {str(expected)[:16]}… written with them{hint}"
        )


def read_newest_valid(paths: list[Path]) -> tuple[Path, dict[str, Any]] | None:
    """Read the first of ``paths`` (newest first) that exists and verifies.

    Each one skipped for being damaged is named in a warning beside the one used; ``None``
    when none exists.

    Raises:
        ValueError: files exist but none of them verifies (each reason named).
    """
    failures = []
    for path in paths:
        if not path.is_file():
            continue
        try:
            contents = read_checkpoint(path)
        except ValueError as err:
            failures.append(str(err))
            continue
        if failures:
            warnings.warn(
                f"{' '.join(failures)}; resuming from the previous checkpoint {path} "
                f"(step {contents.get('step')})",
                stacklevel=2,
            )
        return path, contents
    if failures:
        raise ValueError(f"no checkpoint verifies: {' '.join(failures)}")
    return None


def registry_name(model: GenerativeModel) -> str | None:
    """The name ``model``'s class is registered under, or ``None``."""
    return registered_name(type(model))


def model_entries(model: GenerativeModel) -> dict[str, Any]:
    """The checkpoint entries that rebuild ``model``: registry name, config and state."""
    return {
        "model_name": registry_name(model),
        "model_config": model.config,
        "model_state": model.state_dict(),
    }


def build_model(
    contents: dict[str, Any],
    *,
    use_ema: bool = True,
    model_class: type[GenerativeModel] | None = None,
    device: str | torch.device = "cpu",
    objects: dict[str, Any] | None = None,
) -> GenerativeModel:
    """Rebuild the model of a read checkpoint from its config (no code is unpickled).

    Args:
        contents: as returned by :func:`read_checkpoint`.
        use_ema: load the exponential-moving-average weights when the checkpoint has them.
        model_class: the class, for models not in the registry.
        device: where to put the model.
        objects: constructor arguments that are not configuration (the class's
            ``config_exclude``), given again by the caller: e.g. ``problem_object``, a
            problem the caller loaded from its own file.

    Returns:
        The model in eval mode.
    """
    name = contents.get("model_name")
    if model_class is None:
        if name is None:
            raise ValueError(
                "the checkpoint's model class is not registered; pass model_class= to load it"
            )
        model_class = get_model_class(name)
    unknown = set(objects or {}) - set(model_class.config_exclude)
    if unknown:
        raise ValueError(
            f"{model_class.__name__} takes no objects {sorted(unknown)} beside its config "
            f"(it takes {list(model_class.config_exclude) or 'none'})"
        )
    model = model_class(**contents["model_config"], **(objects or {}))
    ema_state = contents.get("ema_state")
    use_ema = use_ema and ema_state is not None
    model.load_state_dict(ema_state if use_ema else contents["model_state"])
    return model.to(device).eval()


def load_checkpoint(
    path: str | Path,
    *,
    use_ema: bool = True,
    model_class: type[GenerativeModel] | None = None,
    device: str | torch.device = "cpu",
) -> GenerativeModel:
    """Read the checkpoint at ``path`` and rebuild its model via the registry.

    Example:
        >>> model = load_checkpoint("runs/darcy/checkpoint.pt")  # doctest: +SKIP
        >>> fields = model.sample(8)  # doctest: +SKIP
    """
    contents = read_checkpoint(path)
    return build_model(contents, use_ema=use_ema, model_class=model_class, device=device)


def get_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states, as tensors and numbers."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss = random.getstate()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(cuda),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": version, "internal": torch.tensor(internal), "gauss": gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generator states saved by :func:`get_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        if len(state["cuda"]) != torch.cuda.device_count():
            raise ValueError(
                f"the checkpoint holds CUDA RNG states for {len(state['cuda'])} devices, "
                f"this machine has {torch.cuda.device_count()}"
            )
        torch.cuda.set_rng_state_all(state["cuda"])
    npy = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"]), py["gauss"]))
