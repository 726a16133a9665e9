"""Checkpoints that hold only tensors and plain data: atomic writes, safe loads, RNG states."""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from physgen.data.atomic import atomic_output
from physgen.models.base import GenerativeModel, available_models, get_model_class

__all__ = [
    "FORMAT",
    "build_model",
    "get_rng_state",
    "load_checkpoint",
    "model_entries",
    "read_checkpoint",
    "registry_name",
    "save_checkpoint",
    "set_rng_state",
]

FORMAT = "physgen-checkpoint/1"

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


def save_checkpoint(path: str | Path, contents: dict[str, Any]) -> Path:
    """Write ``contents`` to ``path`` atomically (temporary file, fsync, ``os.replace``).

    A crash or kill during the write leaves the previous file at ``path`` intact. Everything
    in ``contents`` must be a tensor or plain data, so the file loads with
    ``torch.load(weights_only=True)``; anything else raises ``TypeError`` before writing.
    """
    _check_plain(contents, "checkpoint")
    with atomic_output(path) as tmp, open(tmp, "wb") as file:
        torch.save({"format": FORMAT, **contents}, file)
    return Path(path)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a physgen checkpoint with ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: no file at ``path``.
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
    return contents


def registry_name(model: GenerativeModel) -> str | None:
    """The name ``model``'s class is registered under, or ``None``."""
    for name, cls in available_models().items():
        if cls is type(model):
            return name
    return None


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
) -> GenerativeModel:
    """Rebuild the model of a read checkpoint from its config (no code is unpickled).

    Args:
        contents: as returned by :func:`read_checkpoint`.
        use_ema: load the exponential-moving-average weights when the checkpoint has them.
        model_class: the class, for models not in the registry.
        device: where to put the model.

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
    model = model_class.from_config(contents["model_config"])
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
