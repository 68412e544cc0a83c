"""Reading arrays of the user's own data from .npy, .npz, .pt and AnnData .h5ad files, without unpickling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lvm.checkpoint import load_torch_file
from lvm.errors import CorruptFileError

__all__ = ["read_anndata", "read_array"]


def read_array(path: Path, key: str | None) -> tuple[Tensor, Tensor | None]:
    """Data and optional labels from .npy (an array), .npz / .pt (an array, or ``x`` and ``y`` entries).

    Raises:
        CorruptFileError: for a file that cannot be read, or that holds pickled objects.
        UnsafeFileError: for a .pt file that needs more than ``torch.load(weights_only=True)``.
        ValueError: for data that is not a numeric array of one row per datapoint.
    """
    if path.suffix == ".pt":
        obj = load_torch_file(path, "data file")
    else:
        try:
            if path.suffix == ".npy":
                obj = np.load(path, allow_pickle=False)
            else:
                with np.load(path, allow_pickle=False) as z:
                    obj = {k: z[k] for k in z.files}
        except ValueError as err:
            if "allow_pickle" in str(err):
                raise CorruptFileError(
                    f"data file {path} holds pickled Python objects, which lvm does not load "
                    f"(unpickling can run code): save a numeric array"
                ) from None
            raise CorruptFileError(f"corrupt data file {path}: {err}") from err
        except (OSError, EOFError) as err:
            raise CorruptFileError(f"corrupt data file {path}: {type(err).__name__}: {err}") from err
    if isinstance(obj, dict):
        name = key or ("x" if "x" in obj else next(iter(obj)) if len(obj) == 1 else None)
        if name not in obj:
            raise ValueError(f"{path}: holds {sorted(obj)}; pass key= to choose the data array")
        x, y = obj[name], obj.get("y")
    else:
        x, y = obj, None
    return _rows(path, x), None if y is None else torch.as_tensor(np.asarray(y)).to(torch.int64)


def read_anndata(path: Path, layer: str | None) -> tuple[Tensor, list[str]]:
    """``X`` (or ``layers[layer]``) of an AnnData ``.h5ad`` file as dense float32 (cells, genes), and the gene names.

    Needs the optional ``anndata`` package (``pip install "lvm[anndata]"``). An ``.h5ad`` file is
    HDF5: reading it unpickles nothing.

    Raises:
        ImportError: without ``anndata``, saying how to install it.
        CorruptFileError: for a file anndata cannot read.
        ValueError: for an unknown ``layer``, naming the layers the file has.
    """
    try:
        import anndata
    except ImportError:
        raise ImportError(f'reading {path} needs the anndata package: pip install "lvm[anndata]"') from None
    try:
        adata = anndata.read_h5ad(path)
    except (OSError, KeyError, ValueError) as err:
        raise CorruptFileError(f"corrupt data file {path}: {type(err).__name__}: {err}") from err
    if layer is not None and layer not in adata.layers:
        raise ValueError(f"{path}: no layer {layer!r}; it has {', '.join(map(repr, adata.layers)) or 'none'}")
    x = adata.X if layer is None else adata.layers[layer]
    if hasattr(x, "toarray"):  # a scipy sparse matrix, as count tables usually are
        x = x.toarray()
    return _rows(path, x), [str(v) for v in adata.var_names]


def _rows(path: Path, x: object) -> Tensor:
    try:
        t = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: the data is not a numeric array ({err})") from None
    if t.dim() < 2:
        raise ValueError(
            f"{path}: data must be (N, ...) with one row per datapoint; got shape {tuple(t.shape)}"
        )
    return t.to(torch.float32)
