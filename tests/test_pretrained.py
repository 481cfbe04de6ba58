"""Hugging Face-style pretrained folders (``pdegen.save_pretrained`` / ``pdegen.from_pretrained``) and the
``torch.export`` (.pt2) deployment of one-pass students and PINNs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.cli import instantiate_module
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters_context

import pdegen
from pdegen.export import OneStepSampler, load_exported, save_exported, save_student_exported
from pdegen.export import main as export_main
from pdegen.modules import DiffusionTeacher, PIDStudent
from pdegen.modules.pinn import PINN
from pdegen.pdes import Darcy

ROOT = Path(__file__).resolve().parents[1]
UNET = {"class_path": "pdegen.nets.UNet", "init_args": {"channels": 2, "base_channels": 8, "channel_mults": [1, 2]}}
MLP = {"class_path": "pdegen.nets.CoordinateMLP", "init_args": {"in_features": 2, "out_features": 3, "width": 16,
                                                                 "depth": 2}}


def built(cls, config: dict):
    """``cls`` built from a config as the pdegen CLI builds it (its hyperparameters are that config)."""
    with _given_hyperparameters_context(config, "lightning.pytorch.cli.instantiate_module"):
        return instantiate_module(cls, config)


def save_checkpoint(module: L.LightningModule, path: Path) -> str:
    """What ``trainer.save_checkpoint`` keeps of a module: its weights, hyperparameters and pdegen record."""
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                  "pytorch-lightning_version": L.__version__, "global_step": 7}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return str(path)


@pytest.fixture
def student(tmp_path) -> PIDStudent:
    """A tiny one-step PID student (Darcy 8², from an untrained teacher checkpoint) whose weights differ
    from the teacher's backbone it was initialised with."""
    torch.manual_seed(0)
    teacher = built(DiffusionTeacher, {"net": UNET, "num_steps": 3})
    teacher.attach_pde(Darcy(resolution=8))
    teacher.normalizer.set_stats(torch.tensor([7.0, 0.01]), torch.tensor([4.0, 0.005]))
    teacher.residual_scales = {"interior": 0.9, "boundary": 1e-4}
    module = built(PIDStudent, {"teacher": save_checkpoint(teacher, tmp_path / "teacher.ckpt"), "num_points": 6})
    with torch.no_grad():
        for parameter in module.trajectory.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return module.eval()


@pytest.fixture
def pinn() -> PINN:
    torch.manual_seed(0)
    return built(PINN, {"net": MLP, "problem": {"class_path": "pdegen.pdes.pointwise.KovasznayFlow"},
                        "collocation": {"num_interior": 32, "num_condition": 8}, "num_eval_points": 64}).eval()


METRICS = {"test/gen/residual_rmse": 0.0123, "test/nfe": 1.0}

FRESH = """
import sys, torch, pdegen
student, pinn, noise, points, out = sys.argv[1:]
model = pdegen.from_pretrained(student)
assert not model.training and model.device.type == "cpu"
noise = torch.load(noise)
samples = model.sample_with(model.generate, len(noise), noise=noise)
values = pdegen.from_pretrained(pinn)(torch.load(points))
torch.save({"samples": samples, "values": values.detach(), "type": type(model).__name__}, out)
"""


def test_pretrained_folders_reproduce_the_module_in_a_fresh_process(tmp_path, student, pinn):
    """A student's samples from the same noise and a PINN's values at the same points, from the folders
    alone (the teacher checkpoint deleted), in a new Python process."""
    folder = pdegen.save_pretrained(student, tmp_path / "pid", metrics=METRICS)
    pdegen.save_pretrained(pinn, tmp_path / "pinn")
    (tmp_path / "teacher.ckpt").unlink()  # the folder stands alone
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary folder left"
    noise = torch.randn(3, *student.sample_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    points = torch.rand(50, 2) * torch.tensor([1.5, 2.0]) - 0.5
    torch.save(noise, tmp_path / "noise.pt")
    torch.save(points, tmp_path / "points.pt")
    result = subprocess.run([sys.executable, "-c", FRESH, str(folder), str(tmp_path / "pinn"),
                             str(tmp_path / "noise.pt"), str(tmp_path / "points.pt"), str(tmp_path / "out.pt")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = torch.load(tmp_path / "out.pt")
    expected = student.sample_with(student.generate, 3, noise=noise)
    assert fresh["type"] == "PIDStudent"
    torch.testing.assert_close(fresh["samples"], expected, rtol=0, atol=0)
    assert expected[:, 0].std() > 0 and expected[:, 0].mean() > 1, "physical units (the normaliser travelled)"
    with torch.no_grad():
        torch.testing.assert_close(fresh["values"], pinn(points), rtol=0, atol=0)


def test_the_folder_describes_the_model_and_loads_in_process(tmp_path, student):
    folder = pdegen.save_pretrained(student, tmp_path / "pid", metrics=METRICS,
                                    training={"data file": "data/darcy8.h5", "data num_samples": 24})
    config = json.loads((folder / "config.json").read_text())
    assert config["module"] == "pdegen.modules.pid:PIDStudent" and config["pdegen_version"] == pdegen.__version__
    assert config["nfe"] == 1 and config["teacher_nfe"] == 5 and config["pde"]["name"] == "darcy"
    assert config["hparams"]["num_points"] == 6 and config["metrics"] == METRICS
    assert config["teacher"]["module"] == "pdegen.modules.teacher:DiffusionTeacher"
    assert config["teacher"]["hparams"]["net"] == UNET
    card = (folder / "README.md").read_text()
    front = card.split("---")[1]
    assert "library_name: pdegen" in front and "- pde\n" in front and "- physics\n" in front
    for text in ("darcy", "NFE (network evaluations) per sample: **1**", "test/gen/residual_rmse", "0.0123",
                 "data/darcy8.h5", "pdegen.from_pretrained", "a_high", "| seed | 0 |"):
        assert text in card, text
    loaded = pdegen.from_pretrained(folder)
    assert not loaded.training and loaded.teacher is not None and loaded.teacher_nfe == 5
    generator = torch.Generator().manual_seed(2)
    torch.testing.assert_close(loaded.sample(2, generator), student.sample(2, torch.Generator().manual_seed(2)),
                               rtol=0, atol=0)
    assert loaded.residual_scales == student.residual_scales


def test_a_pinn_card_counts_one_evaluation_per_point(tmp_path, pinn):
    folder = pdegen.save_pretrained(pinn, tmp_path / "pinn")
    config = json.loads((folder / "config.json").read_text())
    assert config["module"] == "pdegen.modules.pinn:PINN" and config["nfe"] == 1 and config["teacher"] is None
    assert config["pde"]["name"] == "kovasznay" and config["pde"]["outputs"] == ["u", "v", "p"]
    card = (folder / "README.md").read_text()
    assert "NFE (network evaluations) per query point: **1**" in card and "None given." in card
    assert "- pinn" in card and "model(points)" in card


def test_an_existing_folder_is_refused_unless_overwriting(tmp_path, pinn):
    folder = tmp_path / "pinn"
    folder.mkdir()  # an empty folder is taken
    pdegen.save_pretrained(pinn, folder)
    before = (folder / "model.safetensors").read_bytes()
    with torch.no_grad():
        pinn.net.hidden[0].weight.add_(1.0)
    with pytest.raises(FileExistsError, match="not empty.*overwrite=True"):
        pdegen.save_pretrained(pinn, folder)
    assert (folder / "model.safetensors").read_bytes() == before
    pdegen.save_pretrained(pinn, folder, overwrite=True)
    assert (folder / "model.safetensors").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pinn"], "no temporary or old folder left"


def test_damaged_or_incomplete_folders_are_refused_clearly(tmp_path, pinn):
    folder = pdegen.save_pretrained(pinn, tmp_path / "pinn")
    with pytest.raises(FileNotFoundError, match="not found"):
        pdegen.from_pretrained(tmp_path / "nowhere")
    config = (folder / "config.json").read_text()
    (folder / "config.json").write_text(config[: len(config) // 2])
    with pytest.raises(ValueError, match="not valid JSON"):
        pdegen.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({"hparams": {}}))
    with pytest.raises(ValueError, match="does not name a module class"):
        pdegen.from_pretrained(folder)
    (folder / "config.json").write_text(config.replace('"pdegen.modules.pinn:PINN"', '"evil_module:Model"'))
    with pytest.raises(ValueError, match="outside pdegen"):
        pdegen.from_pretrained(folder)
    (folder / "config.json").write_text(config.replace("lightning.pytorch.cli.instantiate_module", "os.system"))
    with pytest.raises(ValueError, match="instantiator 'os.system'"):
        pdegen.from_pretrained(folder)
    (folder / "config.json").write_text(config)
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[:100])
    with pytest.raises(ValueError, match="damaged"):
        pdegen.from_pretrained(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        pdegen.from_pretrained(folder)
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        pdegen.from_pretrained(folder)


def test_weights_of_another_network_are_refused(tmp_path, pinn):
    folder = pdegen.save_pretrained(pinn, tmp_path / "pinn")
    config = json.loads((folder / "config.json").read_text())
    config["hparams"]["net"]["init_args"]["width"] = 8
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not fit PINN"):
        pdegen.from_pretrained(folder)


def test_a_module_built_in_python_is_refused_with_the_reason(tmp_path):
    from pdegen.nets import CoordinateMLP
    from pdegen.pdes.pointwise import KovasznayFlow

    module = PINN(CoordinateMLP(2, 3, width=8, depth=1), KovasznayFlow())
    with pytest.raises(TypeError, match="hyperparameter net is a CoordinateMLP object.*built from a config"):
        pdegen.save_pretrained(module, tmp_path / "pinn")
    assert not (tmp_path / "pinn").exists()


def test_pt2_export_of_a_one_step_student_reproduces_its_samples(tmp_path, student):
    path = save_student_exported(student, tmp_path / "student.pt2")
    program = load_exported(path)
    for n in (1, 5):  # other batch sizes than the traced one
        noise = torch.randn(n, *student.sample_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
        expected = student.sample_with(student.generate, n, noise=noise)
        torch.testing.assert_close(program(noise), expected, rtol=1e-6, atol=0)


def test_pt2_export_of_a_pinn_reproduces_its_values(tmp_path, pinn):
    example = pinn.latency_points(16)
    program = load_exported(save_exported(pinn.net, example, tmp_path / "pinn.pt2"))
    points = torch.rand(1000, 2)
    with torch.no_grad():
        torch.testing.assert_close(program(points), pinn(points), rtol=1e-6, atol=1e-7)


def test_pt2_export_failures_say_which_network_and_what_to_use_instead(tmp_path):
    class DataDependent(torch.nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x  # control flow on the values

    with pytest.raises(RuntimeError, match="torch.export could not capture DataDependent.*--format torchscript"):
        save_exported(DataDependent(), torch.ones(3, 2), tmp_path / "bad.pt2")
    assert not list(tmp_path.iterdir())


def test_export_command_writes_a_pt2_by_default_and_a_pretrained_folder(tmp_path, student, pinn):
    checkpoint = save_checkpoint(student, tmp_path / "student.ckpt")
    written = export_main([checkpoint, "--out", str(tmp_path / "export")])
    assert list(written) == ["pt2"] and written["pt2"].name == "student.pt2"
    noise = torch.randn(3, *student.sample_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(load_exported(written["pt2"])(noise), OneStepSampler(student)(noise), rtol=1e-6,
                               atol=0)

    run = tmp_path / "runs/pinn"
    (run / "checkpoints").mkdir(parents=True)
    (run / "report").mkdir()
    pinn_checkpoint = save_checkpoint(pinn, run / "checkpoints/last.ckpt")
    (run / "report/metrics.json").write_text(json.dumps({"run": {"checkpoint": pinn_checkpoint},
                                                         "metrics": {"test/rel_l2": 0.25}}))
    written = export_main([pinn_checkpoint, "--out", str(tmp_path / "hub"), "--format", "pretrained", "pt2"])
    assert sorted(p.name for p in (tmp_path / "hub").iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                                    "pinn.pt2"]
    card = (tmp_path / "hub/README.md").read_text()
    assert "test/rel_l2" in card and "| training steps | 7 |" in card
    points = torch.rand(20, 2)
    with torch.no_grad():
        torch.testing.assert_close(pdegen.from_pretrained(tmp_path / "hub")(points), pinn(points), rtol=0, atol=0)
        torch.testing.assert_close(load_exported(written["pt2"])(points), pinn(points), rtol=1e-6, atol=1e-7)
    with pytest.raises(FileExistsError, match="overwrite"):
        export_main([pinn_checkpoint, "--out", str(tmp_path / "hub"), "--format", "pretrained"])
    with pytest.raises(ValueError, match="ONNX export is for point-wise networks"):
        export_main([checkpoint, "--out", str(tmp_path / "export"), "--format", "onnx"])
