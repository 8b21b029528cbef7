"""The data options every data-taking command shares: image preprocessing, labels file, dynamic dims, loader script
and the seed of random data. Each is a field of the recipe's ``[data]`` section (flags override the file)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

DATA_HELP = ("a .npz file, a folder of .npz/.npy or of images, FILE.py[:FUNCTION] (loader script), "
             "or random[:N] (seeded random inputs)")

IMAGE = typer.Option(None, "--image", help="Image preprocessing, KEY=VALUE,...: resize=256|224x224, crop=224, "
                     "layout=NCHW|NHWC, channels=RGB|BGR|L, scale=1/255, mean=0.485/0.456/0.406, std=..., "
                     "dtype=float32, input=NAME (auto: from the model's input shape).")
LABELS_FILE = typer.Option(None, "--labels-file", help="Image folders: PATH<TAB>LABEL lines (labels may be "
                           "strings), or class names one per line (else sub-folder names are the classes).")
DIM = typer.Option(None, "--dim", help="Size of a dynamic input dimension, NAME=N (repeatable): random data "
                   "and images.")
LOADER = typer.Option(None, "--data-loader-script", help="FILE.py[:FUNCTION] whose function (default "
                      "load_data) returns the feed dicts; used where the main data option is not given.")
SEED = typer.Option(None, "--seed", help="Seed of random data (--calib random) [default: 0].")


def data_config(base: Any = None, *, image: str | None = None, labels_file: Path | None = None,
                dims: list[str] | None = None, seed: int | None = None) -> Any:
    """``base`` (a recipe's DataConfig, or the defaults) with the flags that were given applied on top."""
    from onnxcompress.data.config import DataConfig, parse_dims, parse_image_spec

    config = base if base is not None else DataConfig()
    changes: dict[str, Any] = {}
    if image is not None:
        changes["image"] = parse_image_spec(image)
    if labels_file is not None:
        changes["labels_file"] = str(labels_file)
    if dims:
        changes["dims"] = {**config.dims, **parse_dims(dims)}
    if seed is not None:
        changes["seed"] = seed
    return replace(config, **changes) if changes else config


def with_loader(primary: Any, loader: str | None, option: str) -> Any:
    """The main data source, or the loader script when the main option was not given (both: an error)."""
    from onnxcompress.errors import RecipeError

    if loader is None:
        return primary
    if primary is not None:
        raise RecipeError(f"give {option} or --data-loader-script, not both",
                          hint=f"{option} also takes the script itself: {option} FILE.py:FUNCTION")
    return loader


def source(value: Path | str | None) -> str | None:
    """A data option as the string the data layer reads (paths, random[:N], FILE.py[:FUNCTION])."""
    return None if value is None else str(value)
