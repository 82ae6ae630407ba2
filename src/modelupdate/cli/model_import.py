"""`modelupdate import`: a model trained elsewhere becomes a checkpoint every command accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..validation import parse_arch_args, parse_number_list
from .console import err_console, out_console, print_written
from .errors import run


def import_cmd(
    arch: Annotated[str, typer.Option("--arch", help="Architecture: a registered name (`modelupdate models`), a "
                                      "torchvision builder (torchvision.models:resnet18) or package.module:factory.")],
    weights: Annotated[Path, typer.Option("--weights", help="The model's state dict: a .safetensors file (or "
                                          ".pth/.pt with --unsafe-load-pickle).")],
    out: Annotated[Path, typer.Option("--out", help="The checkpoint to write (.safetensors).")],
    arch_args: Annotated[str, typer.Option("--arch-args", help="The architecture's keyword arguments as a JSON "
                                           "object, e.g. '{\"stem\": \"standard\"}'.")] = "{}",
    classes: Annotated[str | None, typer.Option("--classes", help="Class names in logit order: a file with one per "
                                                "line, or a comma-separated list.")] = None,
    input_shape: Annotated[str | None, typer.Option("--input-shape", metavar="C,H,W",
                                                    help="The input the model expects, e.g. 3,224,224.")] = None,
    mean: Annotated[str | None, typer.Option("--mean", metavar="M1,M2,...", help="Per-channel mean the model's "
                                             "inputs were normalised with (pixels in 0..1).")] = None,
    std: Annotated[str | None, typer.Option("--std", metavar="S1,S2,...", help="Per-channel std of that "
                                            "normalisation.")] = None,
    like: Annotated[Path | None, typer.Option("--like", metavar="CHECKPOINT", help="Take classes, input shape, "
                                              "normalisation and dataset name from this checkpoint (options "
                                              "given override it).")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Name of the data the model was trained on, "
                                                "for the record.")] = None,
    crop_pct: Annotated[float | None, typer.Option("--crop-pct", metavar="SHARE", help="Its evaluation: the "
                                                   "shorter side resized to the input size / SHARE, then the centre "
                                                   "cropped [default: --like's, else 0.875 for inputs of 128 px and "
                                                   "more, else 1].")] = None,
    resize: Annotated[int | None, typer.Option("--resize", metavar="PIXELS", help="Its evaluation: the shorter side "
                                               "before the centre crop, instead of --crop-pct (256 for "
                                               "torchvision's Resize(256) + CenterCrop(224)).")] = None,
    interpolation: Annotated[str | None, typer.Option("--interpolation", help="Its evaluation resize: bilinear, "
                                                      "bicubic or nearest [default: --like's, else bilinear].")
                             ] = None,
    unsafe_load_pickle: Annotated[bool, typer.Option("--unsafe-load-pickle", help="Read a .pth/.pt state dict with "
                                                     "torch.load(weights_only=True). Only for files you trust.")
                                  ] = False,
) -> None:
    """Wrap a model trained elsewhere into a checkpoint usable as --old, by predict, flip-report, ..."""
    from ..prediction_csv import read_class_list
    from ..workflows.model_import import ImportSpec, import_model

    def spec() -> ImportSpec:
        shape = parse_number_list("--input-shape", input_shape, int)
        return ImportSpec(arch=arch, weights=weights, arch_args=parse_arch_args(arch_args),
                          classes=list(read_class_list(classes)) if classes is not None else None,
                          input_shape=tuple(shape) if shape else None, mean=parse_number_list("--mean", mean),
                          std=parse_number_list("--std", std), like=like, dataset=dataset,
                          unsafe_load_pickle=unsafe_load_pickle, crop_pct=crop_pct, resize=resize,
                          interpolation=interpolation)

    job = run(spec)
    result = run(lambda: import_model(job, out))
    if result.loaded_with_pickle:
        err_console.print(f"note: read {weights} with torch.load(weights_only=True) (--unsafe-load-pickle)",
                          soft_wrap=True)
    meta = result.meta
    print_written(result.out)
    table = Table()
    table.add_column("field")
    table.add_column("value")
    for field, value in (("arch", meta.arch), ("classes", f"{meta.num_classes}: {', '.join(meta.classes[:6])}"
                                                + (", ..." if meta.num_classes > 6 else "")),
                         ("input shape", ", ".join(map(str, meta.input_shape))),
                         ("normalisation", f"mean {meta.normalization['mean']}, std {meta.normalization['std']}"),
                         ("evaluation", f"shorter side to {meta.eval_transform['resize']} px "
                                        f"({meta.eval_transform['interpolation']}), centre crop "
                                        f"{meta.input_shape[1]}x{meta.input_shape[2]}"),
                         ("parameters", f"{result.params:,}"), ("weights sha256", result.weights_sha256)):
        table.add_row(field, value)
    out_console.print(table)
