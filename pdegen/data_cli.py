"""``pdegen-data``: generate PDE datasets and inspect dataset files.

    pdegen-data generate darcy --num-samples 1000 --resolution 64 --seed 0 --output data/darcy64.h5
    pdegen-data generate darcy --num-samples 100000 --shard 3 --num-shards 16 --output data/d64-03.h5
    pdegen-data merge data/d64-*.h5 --output data/darcy64_100k.h5
    pdegen-data import pdebench-burgers 1D_Burgers_Sols_Nu0.01.hdf5 --output data/pdebench_burgers.h5
    pdegen-data info data/darcy64.h5
    pdegen-data export data/ks.h5 --format the-well --output well/ks.hdf5
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Sequence

import h5py
import torch

from pdegen.datagen import generate_dataset, merge_shards
from pdegen.io import read_info
from pdegen.pdes import PDES, get_pde, pde_parameters
from pdegen.readers import FORMATS, import_dataset
from pdegen.signals import sigterm_stops
from pdegen.well import TIME_FAMILIES, export_well

EXPORT_FORMATS = {"the-well": export_well}


def _parse_assignment(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _device(text: str) -> str:
    if text != "cpu" and not text.startswith("cuda"):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: use cpu, cuda or cuda:<index>")
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text} asked for, but this torch ({torch.__version__}) sees no CUDA "
                                         "device: use --device cpu, or install a CUDA build of torch")
    return text


def _parameters_help() -> str:
    return "PDE parameters for --set KEY=VALUE:\n" + "\n".join(
        f"  {name}: {', '.join(pde_parameters(name))}" for name in sorted(PDES))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pdegen-data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="solve a PDE for random inputs and write an HDF5 file",
                              epilog=_parameters_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    gen.add_argument("pde", help=f"PDE family, one of {sorted(PDES)}")
    gen.add_argument("--num-samples", type=_positive, required=True)
    gen.add_argument("--resolution", type=int, default=None, help="grid points per axis (family default if unset)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--output", required=True, help="path of the .h5 file to write")
    gen.add_argument("--set", dest="params", type=_parse_assignment, action="append", default=[],
                     metavar="KEY=VALUE", help="another PDE parameter, e.g. --set a_high=10.0 (repeatable)")
    gen.add_argument("--device", type=_device, default="cpu", help="where to solve: cpu, cuda or cuda:<index>")
    gen.add_argument("--batch-size", type=_positive, default=256, help="samples solved at once")
    gen.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="storage precision")
    gen.add_argument("--shard", type=int, default=0, help="write only this shard (0-based) of --num-shards")
    gen.add_argument("--num-shards", type=_positive, default=1,
                     help="split the set into this many shard files (e.g. one per SLURM array task)")
    gen.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    gen.add_argument("--overwrite", action="store_true", help="replace an existing --output file")

    merge = commands.add_parser("merge", help="join the shard files of one run into the unsharded file")
    merge.add_argument("shards", nargs="+", help="the shard files (any order)")
    merge.add_argument("--output", required=True)
    merge.add_argument("--overwrite", action="store_true", help="replace an existing --output file")

    imp = commands.add_parser("import", help="convert a public dataset layout into a pdegen HDF5 file")
    imp.add_argument("format", help=f"one of {sorted(FORMATS)}")
    imp.add_argument("source", help="the source file or folder")
    imp.add_argument("--output", required=True, help="path of the .h5 file to write")
    imp.add_argument("--set", dest="params", type=_parse_assignment, action="append", default=[],
                     metavar="KEY=VALUE", help="a reader option, e.g. --set num_samples=100 (repeatable)")
    imp.add_argument("--overwrite", action="store_true", help="replace an existing --output file")

    exp = commands.add_parser("export", help="write a dataset file in another layout (the Well's HDF5 format)",
                              description=export_well.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    exp.add_argument("file", help="the pdegen dataset file (a time-dependent family: " + ", ".join(TIME_FAMILIES) + ")")
    exp.add_argument("--format", required=True, choices=list(EXPORT_FORMATS), help="the layout to write")
    exp.add_argument("--output", required=True,
                     help="the .hdf5 file to write (with --split: the dataset folder, the file going to "
                          "<output>/data/<split>/<file stem>.hdf5)")
    exp.add_argument("--split", default=None, help="write into the Well's split folder layout, e.g. train")
    exp.add_argument("--dataset-name", default=None, help="the Well's dataset_name (default pdegen_<family>)")
    exp.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                     help="storage precision (the Well's is float32; float64 round-trips exactly)")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    info = commands.add_parser("info", help="shapes, attributes and residual statistics of a dataset file")
    info.add_argument("file")
    info.add_argument("--max-samples", type=_positive, default=256, help="samples used for the residual statistics")
    return parser


def generate(args: argparse.Namespace) -> None:
    params = dict(args.params)
    if args.resolution is not None:
        params["resolution"] = args.resolution
    pde = get_pde(args.pde, **params)
    result = generate_dataset(pde, args.num_samples, args.seed, args.output, device=args.device,
                              batch_size=args.batch_size, dtype=args.dtype, progress=not args.no_progress,
                              shard=args.shard, num_shards=args.num_shards, overwrite=args.overwrite)
    print(f"wrote {result['num_samples']} {pde.name} samples to {result['path']} in {result['seconds']:.1f} s "
          f"({result['samples_per_second']:.1f} samples/s)")


def import_(args: argparse.Namespace) -> None:
    result = import_dataset(args.format, args.source, args.output, overwrite=args.overwrite, **dict(args.params))
    print(f"imported {result['num_samples']} samples from {args.source} ({result['source']}) into {result['path']}")
    print(result["notes"])


def merge(args: argparse.Namespace) -> None:
    result = merge_shards(args.shards, args.output, overwrite=args.overwrite)
    print(f"merged {result['num_shards']} shards into {result['path']} ({result['num_samples']} samples)")


def export(args: argparse.Namespace) -> None:
    path = EXPORT_FORMATS[args.format](args.file, args.output, overwrite=args.overwrite, split=args.split,
                                       dataset_name=args.dataset_name, dtype=args.dtype)
    print(f"exported {args.file} in the {args.format} format to {path}")


def info(args: argparse.Namespace) -> int:
    """Print the file's summary; 1 when a channel holds NaN or inf among the samples read."""
    meta = read_info(args.file)
    pde = meta.pde
    print(f"file      {meta.path}")
    print(f"pde       {pde.name} {json.dumps(pde.params())}")
    print(f"grid      {pde.grid.shape} on extent {pde.grid.extent}, h = {pde.grid.spacing}, {pde.grid.boundary}")
    print(f"samples   {meta.num_samples}")
    for key, value in sorted(meta.attrs.items()):
        if key not in ("pde", "pde_params", "grid"):
            print(f"  {key}: {value}")
    count = min(args.max_samples, meta.num_samples)
    from pdegen.metrics import PDEResidualNorm  # here: torchmetrics is slow to import

    metric = PDEResidualNorm(pde)
    bad = []
    with h5py.File(meta.path, "r") as f:
        for name in pde.channels:
            data = f[name]
            values = torch.from_numpy(data[:count])
            print(f"channel {name!r}: shape {data.shape} {data.dtype}, first {count}: min {values.min():.4g} "
                  f"max {values.max():.4g} mean {values.mean():.4g} std {values.std():.4g}")
            if not torch.isfinite(values).all():
                bad.append(f"{name!r} ({int((~torch.isfinite(values)).sum())} NaN/inf values)")
        if bad:
            print(f"pdegen-data: error: {meta.path} holds non-finite values in channel {', '.join(bad)} among "
                  f"the first {count} samples: the file is corrupt, regenerate it", file=sys.stderr)
            return 1
        for start in range(0, count, 64):
            stop = min(count, start + 64)
            metric.update(torch.stack([torch.from_numpy(f[n][start:stop]) for n in pde.channels], dim=1))
    result = {k: float(v) for k, v in metric.compute().items()}
    print(f"residual of the first {count} samples (discrete L2 norm, mean over samples):")
    print(f"  interior {result['interior']:.3e} (relative {result['interior_rel']:.3e}); "
          f"boundary {result['boundary']:.3e} (relative {result['boundary_rel']:.3e})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with sigterm_stops():  # the writer removes its temporary file and lock; exit code 143
            return {"generate": generate, "merge": merge, "import": import_, "export": export,
                    "info": info}[args.command](args) or 0
    except (ValueError, OSError) as err:  # FileNotFoundError, FileExistsError, IsADirectoryError among them
        print(f"pdegen-data: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
