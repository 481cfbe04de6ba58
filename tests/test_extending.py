"""The recipe of docs/extending.md, run: a toy student is one GeneratorModule subclass writing loss, generate
and nfe, and it trains, samples and is compared with its teacher through what the base class provides."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from datamodules.generated import GaussianNoise
from pdegen.diffusion import EDMPreconditioner, GaussianDenoiser
from pdegen.modules import FrozenTeacher, GeneratorModule
from pdegen.nets import UNet
from pdegen.pdes import Poisson


class DirectStudent(GeneratorModule):
    """d_θ(ε) ≈ the teacher's sample from ε, trained on fresh teacher samples each step."""

    def __init__(self, teacher, net, sample_batch_size=64, optimizer=torch.optim.Adam):
        frozen = FrozenTeacher.load(teacher)
        super().__init__(net.channels, teacher=frozen, sample_batch_size=sample_batch_size, optimizer=optimizer)
        self.save_init_arguments()
        self.student = EDMPreconditioner(net, sigma_data=frozen.sigma_data)

    @property
    def nfe(self):
        return 1

    def generate(self, noise):
        return self.student(noise * self.teacher.sigma_max, self.teacher.sigma_max).double()

    def training_data(self, samples):
        return GaussianNoise(len(samples), self.sample_shape, self.seed)  # its batches: fresh unit noise

    def loss(self, batch, generator=None):
        noise = self.noise_batch(batch, generator)  # the served noise; in val/test, noise of the batch's shape
        with torch.no_grad():
            target = self.teacher.sample(noise)
        return (self.generate(noise) - target).square().mean()


def gaussian_teacher() -> FrozenTeacher:
    """The exact denoiser of N(0.5, 0.3²) per entry, through the bare-denoiser adapter, at 6 Heun steps."""
    teacher = FrozenTeacher.load(GaussianDenoiser(0.5, 0.3))
    return FrozenTeacher(teacher.denoiser, num_steps=6)


def test_a_toy_student_by_the_recipe_trains_samples_and_meets_its_teacher():
    torch.manual_seed(0)
    pde = Poisson(resolution=8)
    student = DirectStudent(gaussian_teacher(), UNet(channels=2, base_channels=8, channel_mults=[1]),
                            optimizer=lambda params: torch.optim.Adam(params, lr=3e-3))
    student.attach_pde(pde)
    assert "teacher" not in student.hparams, "a teacher given as a module travels in the state dict, not hparams"
    eps = torch.randn(16, *pde.sample_shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def gap() -> float:
        with torch.no_grad():
            return float((student.generate(eps) - student.teacher.sample(eps)).square().mean())

    before = gap()
    batches = DataLoader(student.training_data(range(8 * 40)), batch_size=8)  # as a PDEDataModule serves it
    L.Trainer(max_steps=40, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(student, batches)
    assert gap() < 0.25 * before, "the loss the student wrote trains it towards its teacher"
    assert not student.teacher.training and not any(p.requires_grad for p in student.teacher.parameters())

    generator = torch.Generator().manual_seed(2)
    samples = student.sample(5, generator=generator)
    teacher_samples = student.teacher_sample(5, generator=torch.Generator().manual_seed(2))
    assert samples.shape == teacher_samples.shape == (5, *pde.sample_shape) and samples.dtype == torch.float64
    assert student.latency_nfe() == {"model": 1, "teacher": 11}, "Heun-6 ending at 0: 2·6 − 1 evaluations"
    assert set(student.latency_targets(2)) == {"model", "teacher"}
    assert student.distillation_sigmas is None
    with pytest.raises(TypeError, match="distils no σ grid"):
        student.grid_teacher_sample(2)


def test_a_generator_that_leaves_out_a_member_cannot_be_built():
    class NoLoss(GeneratorModule):
        nfe = 1

        def generate(self, noise):
            return noise

    with pytest.raises(TypeError, match="abstract.*loss"):
        NoLoss(2)
