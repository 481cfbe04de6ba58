"""Teacher training throughput: EDM-loss training steps per second, in samples/s.

    python tools/bench_teacher.py --resolution 64 --batch-size 16 --steps 10

Times forward + backward + Adam step of the DiffusionTeacher's loss for each backbone
(the quickstart U-Net, the GPU-config U-Net and FNO) on the CPU, and on CUDA when present,
after warm-up steps; prints a markdown table. Figures are benchmarks, never test assertions.
"""

from __future__ import annotations

import argparse

import torch

from pdegen.benchmarking import BACKBONES, items_per_second
from pdegen.modules import DiffusionTeacher
from pdegen.pdes import Darcy


def throughput(name: str, resolution: int, batch_size: int, steps: int, device: str, warmup: int = 2) -> float:
    torch.manual_seed(0)
    pde = Darcy(resolution=resolution)
    teacher = DiffusionTeacher(BACKBONES[name]()).to(device)
    teacher.attach_pde(pde)
    batch = pde.generate(batch_size, generator=torch.Generator().manual_seed(0)).float().to(device)
    teacher.normalizer.set_stats(*teacher.normalizer.stats_of(batch))
    optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        teacher.loss(batch).backward()
        optimizer.step()

    return items_per_second(step, batch_size, steps, warmup, cuda=device == "cuda")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--gpu-batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, resolution {args.resolution}²\n")
    print("| backbone | device | batch | samples/s |")
    print("|---|---|---|---|")
    for name in args.backbones:
        for device in devices:
            batch = args.batch_size if device == "cpu" else args.gpu_batch_size
            rate = throughput(name, args.resolution, batch, args.steps, device)
            print(f"| {name} | {device} | {batch} | {rate:.1f} |", flush=True)


if __name__ == "__main__":
    main()
