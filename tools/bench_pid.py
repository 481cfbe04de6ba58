"""PID student speed next to its teacher's, in one process: training and sampling throughput.

    python tools/bench_pid.py --resolution 32 --batch-size 32 --backbones unet-quickstart

Training: samples/s of the teacher's EDM step (the baseline) and of the PID student's step (two
student evaluations, one teacher evaluation, backward through the student; the same for both
schemes) with the same backbone. Sampling: samples/s of the teacher's own sampler (Heun with the
steps of the config that trains that backbone: 18 for the quickstart's U-Net, 32 for the GPU
configs'), of the N-point Euler solve the student distils, and of the student's one-step map, at the
same batch size, in one process; the speed-up divides the first by the last. CPU, and CUDA when
present. Weights are random: speed does not depend on them. Figures are benchmarks, never test
assertions.
"""

from __future__ import annotations

import argparse
import copy

import torch

from pdegen.benchmarking import BACKBONES, add_bench_options, items_per_second, parse_bench_args
from pdegen.diffusion import Euler
from pdegen.modules import DiffusionTeacher, PIDStudent
from pdegen.pdes import Darcy

TEACHER_STEPS = {"unet-quickstart": 18, "unet-gpu-config": 32, "fno-gpu-config": 32}
"""Heun steps of the teacher config that trains each backbone (quickstart/darcy.yaml, teacher/darcy*.yaml)."""


def build(name: str, resolution: int, num_points: int, device: str) -> tuple[DiffusionTeacher, PIDStudent]:
    torch.manual_seed(0)
    teacher = DiffusionTeacher(BACKBONES[name](), num_steps=TEACHER_STEPS[name])
    teacher.attach_pde(Darcy(resolution=resolution))
    teacher.normalizer.set_stats(torch.tensor([7.5, 0.02]), torch.tensor([4.5, 0.01]))
    student = PIDStudent(copy.deepcopy(teacher), num_points=num_points)  # freezes its own copy of the teacher
    return teacher.to(device), student.to(device)


def training_rates(teacher: DiffusionTeacher, student: PIDStudent, batch: torch.Tensor, steps: int) -> list[float]:
    rates = []
    for module in (teacher, student):
        module.train()
        optimizer = torch.optim.RAdam([p for p in module.parameters() if p.requires_grad], lr=1e-5)

        def step(module=module, optimizer=optimizer) -> None:
            optimizer.zero_grad(set_to_none=True)
            module.loss(batch).backward()
            optimizer.step()

        rates.append(items_per_second(step, len(batch), steps, cuda=batch.is_cuda))
    return rates


def sampling_rates(teacher: DiffusionTeacher, student: PIDStudent, batch_size: int, repeats: int) -> list[float]:
    cuda = teacher.device.type == "cuda"
    draws = [lambda: teacher.sample(batch_size, batch_size=batch_size),
             lambda: student.grid_teacher_sample(batch_size, sampler=Euler(), batch_size=batch_size),
             lambda: student.sample(batch_size, batch_size=batch_size)]
    return [items_per_second(draw, batch_size, repeats, warmup=1, cuda=cuda) for draw in draws]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--gpu-batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument("--num-points", type=int, default=80, help="N of the student's grid")
    parser.add_argument("--backbones", nargs="+", default=["unet-quickstart"], choices=list(BACKBONES))
    add_bench_options(parser)
    args = parse_bench_args(parser, argv)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, Darcy {args.resolution}², "
          f"student grid N = {args.num_points}\n")
    print("| backbone | device | batch | teacher EDM step, samples/s | PID step, samples/s | PID / teacher "
          f"| teacher's own sampler | samples/s | Euler-{args.num_points} samples/s | one-step samples/s "
          "| one-step / teacher's own |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.backbones:
        for device in devices:
            batch_size = args.batch_size if device == "cpu" else args.gpu_batch_size
            teacher, student = build(name, args.resolution, args.num_points, device)
            batch = torch.zeros(batch_size, 2, args.resolution, args.resolution, device=device)
            edm, pid = training_rates(teacher, student, teacher.normalizer.decode(batch), args.steps)
            heun, euler, one_step = sampling_rates(teacher, student, batch_size, args.repeats)
            own = f"Heun-{TEACHER_STEPS[name]} ({teacher.nfe} NFE)"
            print(f"| {name} | {device} | {batch_size} | {edm:.1f} | {pid:.1f} | {pid / edm:.2f} | {own} "
                  f"| {heun:.1f} | {euler:.2f} | {one_step:.1f} | {one_step / heun:.1f} |", flush=True)


if __name__ == "__main__":
    main()
