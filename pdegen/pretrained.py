"""A trained module as a Hugging Face Hub-style folder, offline and without any huggingface dependency:

    model.safetensors   the module's weights (its state dict: network, normaliser statistics, buffers;
                        a student's frozen teacher under its own prefix, so the folder stands alone)
    config.json         the module class ("package.module:Class"), its hyperparameters, the pdegen version,
                        the PDE, the NFE, the checkpoint record (PDE, residual scales, seed) and, for a
                        student, its teacher's class, hyperparameters and record
    README.md           a model card (YAML front matter, the PDE, the training data, the sampling cost,
                        the test metrics, how to load it)

``save_pretrained(module, folder, metrics)`` writes one (into a temporary sibling folder, then renamed);
``pdegen.from_pretrained(folder)`` rebuilds the module on the CPU in eval mode; ``python -m pdegen.export
<ckpt> --format pretrained --out <folder>`` makes one from a checkpoint (test metrics from the run's
``report/metrics.json``, training data from its ``config.yaml``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from pdegen import __version__
from pdegen.io import fsync_folder

WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
FORMAT = 1
"""The layout version written into config.json."""
INSTANTIATORS = ("lightning.pytorch.cli.instantiate_module",)
"""The only ``_instantiator`` a config may name (it is imported and called when the module is rebuilt)."""

# where a student keeps its teacher: (hyperparameter path to the teacher checkpoint, the prefix of the teacher's
# weights in the student's state dict, the prefix of the same weights in the teacher checkpoint's state dict)
TEACHER_LOCATIONS = (
    (("teacher",), "teacher.", ""),  # PIDStudent, PIDDMStudent (a FrozenTeacher holds denoiser and normaliser)
    (("teacher",), "window_teacher.", ""),  # ForecastStudent (the ConditionalDiffusion itself)
    (("distillation", "init_args", "teacher"), "distillation.teacher.", "net."),  # KD-PINN (the teacher's net)
    (("distillation", "teacher"), "distillation.teacher.", "net."),
)


# ---------------------------------------------------------------------------------------------- describing
def _jsonable(value: Any, where: str) -> Any:
    """``value`` as plain JSON (tuples become lists), or a clear error naming the hyperparameter."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Path):
        return os.fspath(value)
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"hyperparameter {where} has non-string keys: save_pretrained writes JSON")
        return {k: _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"hyperparameter {where} is a {type(value).__name__} object, not a config value: save_pretrained "
                    "records a module's constructor arguments as JSON, so the module must have been built from a "
                    "config (the pdegen CLI, LightningCLI); for a trained module pass its checkpoint path, "
                    "save_pretrained('<run>/checkpoints/last.ckpt', folder), whose config it reads")


def _hparams(module: nn.Module, hparams: Mapping[str, Any] | None = None) -> dict[str, Any]:
    hparams = dict(hparams if hparams is not None else getattr(module, "hparams", {}) or {})
    return {key: _jsonable(value, key) for key, value in hparams.items()}


def _record(module: L.LightningModule) -> dict[str, Any]:
    """What the module writes under ``"pdegen"`` in a checkpoint (its own ``on_save_checkpoint``)."""
    checkpoint: dict[str, Any] = {}
    if hasattr(module, "on_save_checkpoint"):
        module.on_save_checkpoint(checkpoint)
    record = checkpoint.get("pdegen")
    if record is None:
        from pdegen.modules.checkpoints import checkpoint_record

        record = checkpoint_record(module)
    return _jsonable(record, "pdegen record")


def describe_physics(module: nn.Module) -> dict[str, Any] | None:
    """The PDE of a generator (``pde.describe()``), or a point-wise problem's name, parameters, inputs,
    outputs and domain (a PINN)."""
    pde = getattr(module, "pde", None)
    if pde is not None:
        return _jsonable(pde.describe(), "pde")
    problem = getattr(module, "problem", None)
    if problem is not None:
        return _jsonable({"name": problem.name, "params": problem.params, "inputs": list(problem.inputs),
                          "outputs": list(problem.outputs), "lower": list(problem.lower),
                          "upper": list(problem.upper), "conditions": list(problem.conditions)}, "problem")
    return None


def sampling_cost(module: nn.Module) -> dict[str, Any]:
    """``nfe``: network evaluations per sample (a generator) or per query point (a PINN: 1); ``teacher_nfe``
    for a student whose teacher samples with its own sampler."""
    cost: dict[str, Any] = {}
    try:
        nfe = module.latency_nfe() if hasattr(module, "latency_nfe") else {"model": getattr(module, "nfe", None)}
    except Exception:  # a module without its PDE cannot say
        nfe = {"model": getattr(module, "nfe", None)}
    cost["nfe"] = nfe.get("model")
    if nfe.get("teacher") is not None:
        cost["teacher_nfe"] = nfe["teacher"]
    cost["per"] = "query point" if getattr(module, "problem", None) is not None else "sample"
    return cost


def _get(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(tree, Mapping) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value


def _teacher(module: nn.Module, hparams: dict[str, Any], state: dict[str, Tensor],
             teacher: str | os.PathLike | None) -> dict[str, Any] | None:
    """The teacher section of config.json: the teacher checkpoint's class, hyperparameters and record, where
    its path sits in the student's hyperparameters and where its weights sit in the student's state dict.
    ``None`` for a module that names no teacher checkpoint."""
    location = next((entry for entry in TEACHER_LOCATIONS if isinstance(_get(hparams, entry[0]), str)
                     and any(k.startswith(entry[1]) for k in state)), None)
    if location is None:
        held = sorted({prefix for _, prefix, _ in TEACHER_LOCATIONS if any(k.startswith(prefix) for k in state)})
        if held:
            raise ValueError(f"{type(module).__name__} holds a teacher ({held[0]}*) that its hyperparameters do not "
                             "name as a checkpoint (it was given as a module): save_pretrained needs a student "
                             "built with `teacher: <checkpoint path>` so that the folder can rebuild it")
        return None
    path, prefix, key_prefix = location
    source = _get(hparams, path)
    checkpoint_path = Path(teacher if teacher is not None else source)
    if not checkpoint_path.is_file():
        raise FileNotFoundError(
            f"{type(module).__name__}'s teacher checkpoint {os.fspath(checkpoint_path)!r} is not found: the folder "
            "records the teacher's class and hyperparameters (its weights come from the student) so that it "
            "loads on its own; pass save_pretrained(..., teacher=<its checkpoint>) where it moved")
    from pdegen.modules.checkpoints import _weights_only

    saved = torch.load(checkpoint_path, map_location="cpu", weights_only=_weights_only(checkpoint_path), mmap=True)
    held = {key_prefix + k[len(prefix):] for k in state if k.startswith(prefix)}
    if held != set(saved["state_dict"]):
        raise ValueError(f"the weights of the teacher {os.fspath(checkpoint_path)!r} are not where "
                         f"{type(module).__name__} keeps its teacher: save_pretrained cannot make it stand alone")
    record = saved.get("pdegen", {})
    return {"module": record.get("module"), "hparams": _jsonable(saved.get("hyper_parameters", {}), "teacher"),
            "pdegen": _jsonable(record, "teacher record"), "checkpoint": os.fspath(source), "hparam": list(path),
            "weights_prefix": prefix, "checkpoint_prefix": key_prefix}


def make_config(module: nn.Module, teacher: str | os.PathLike | None = None,
                training: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
                hparams: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """config.json of ``module`` (see the module docstring); ``hparams`` replace the module's."""
    hparams = _hparams(module, hparams)
    state = module.state_dict()
    return {"format": FORMAT, "library_name": "pdegen", "pdegen_version": __version__,
            "module": f"{type(module).__module__}:{type(module).__qualname__}", "hparams": hparams,
            "pdegen": _record(module), "pde": describe_physics(module), **sampling_cost(module),
            "teacher": _teacher(module, hparams, state, teacher), "training": _jsonable(training or {}, "training"),
            "metrics": _jsonable(dict(metrics or {}), "metrics")}


# ---------------------------------------------------------------------------------------------- the card
def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def model_card(config: dict[str, Any]) -> str:
    """README.md: YAML front matter for the Hub, then the PDE, the training data, the sampling cost, the
    test metrics and how to load it."""
    pde = config.get("pde") or {}
    name = pde.get("name", "unknown")
    cls = config["module"].rpartition(":")[2]
    is_pinn = config.get("per") == "query point"
    kind = "pinn" if is_pinn else "generative-model"
    tags = ["pde", "physics", "physics-informed", kind, name, cls.lower()]
    if config.get("teacher"):
        tags.append("distillation")
    front = ["---", "library_name: pdegen", "tags:", *[f"- {t}" for t in dict.fromkeys(tags)]]
    metrics = config.get("metrics") or {}
    if metrics:
        front += ["model-index:", f"- name: {cls}-{name}", "  results:", "  - task:", "      type: pde-surrogate",
                  "    metrics:"]
        front += [f"    - type: {json.dumps(str(k))}\n      value: {_value(v)}" for k, v in metrics.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)]
    front.append("---")
    lines = [*front, "", f"# {cls} for {name}", ""]
    what = "a physics-informed network u(coords)" if is_pinn else "a generator of PDE fields"
    lines += [f"A pdegen `{config['module']}` ({what}), saved with pdegen {config['pdegen_version']}.", ""]

    lines += ["## The PDE", ""]
    if pde:
        lines += [f"**{name}**" + (f": channels {', '.join(pde['channels'])}" if pde.get("channels") else "")
                  + (f"; inputs {', '.join(pde['inputs'])} -> outputs {', '.join(pde['outputs'])}"
                     if pde.get("inputs") else ""), ""]
        grid = pde.get("grid")
        if grid:
            lines += [f"Grid {' × '.join(map(str, grid.get('shape', [])))}, extent {grid.get('extent')}, "
                      f"boundary {grid.get('boundary')}.", ""]
        if pde.get("lower") is not None:
            lines += [f"Domain {pde['lower']} to {pde['upper']}; conditions {pde.get('conditions')}.", ""]
        params = pde.get("params") or {}
        if params:
            lines += ["| parameter | value |", "|---|---|", *[f"| {k} | {_value(v)} |" for k, v in params.items()], ""]
    else:
        lines += ["Not recorded (the module had no PDE attached).", ""]

    lines += ["## Training data", ""]
    training = dict(config.get("training") or {})
    seed = (config.get("pdegen") or {}).get("seed")
    if seed is not None:
        training.setdefault("seed", seed)
    teacher = config.get("teacher")
    if teacher:
        training.setdefault("teacher checkpoint", teacher.get("checkpoint"))
        training.setdefault("teacher module", teacher.get("module"))
    if training:
        lines += ["| | |", "|---|---|", *[f"| {k} | {_value(v)} |" for k, v in training.items()], ""]
    else:
        lines += ["Not recorded.", ""]
    if is_pinn:
        lines += ["A PINN trains on collocation points of the problem's domain (hyperparameters in config.json).", ""]

    lines += ["## Sampling cost", ""]
    nfe = config.get("nfe")
    shown = nfe if nfe is not None else "unknown"
    lines.append(f"NFE (network evaluations) per {config.get('per', 'sample')}: **{shown}**"
                 + (f"; its teacher with its own sampler: {config['teacher_nfe']}." if config.get("teacher_nfe")
                    else "."))
    lines.append("")

    lines += ["## Test metrics", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|", *[f"| {k} | {_value(v)} |" for k, v in metrics.items()], ""]
    else:
        lines += ["None given.", ""]

    lines += ["## How to load it", "", "```python", "import pdegen", "",
              'model = pdegen.from_pretrained("<this folder>")  # on the CPU, in eval mode']
    if is_pinn:
        lines += ["values = model(points)  # points (N, d) in the problem's coordinates -> (N, k)"]
    else:
        lines += ["samples = model.sample(16)  # (16, C, *grid) in physical units"]
    lines += ["```", "", "The weights are in `model.safetensors`"
              + (" (the frozen teacher's under its prefix, so the folder loads on its own)" if teacher else "")
              + "; the class and its hyperparameters in `config.json`.", ""]
    return "\n".join(lines)


def run_context(checkpoint: str | os.PathLike, saved: Mapping[str, Any]) -> dict[str, Any]:
    """What a ``pdegen`` run folder says about a checkpoint in its ``checkpoints/`` (``saved``: its loaded
    contents): the test metrics of ``report/metrics.json`` (when that report evaluated this very checkpoint,
    or names none) and, for the card, the training data (``config.yaml``'s ``data``), the seed, the steps and
    the settings hash."""
    import yaml

    checkpoint = Path(checkpoint).resolve()
    run = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    context: dict[str, Any] = {"metrics": None, "training": {}}
    report = run / "report" / "metrics.json"
    if report.is_file():
        try:
            summary = json.loads(report.read_text())
            evaluated = (summary.get("run") or {}).get("checkpoint")
            if evaluated is None or Path(evaluated).resolve() == checkpoint:
                context["metrics"] = summary.get("metrics")
            else:
                print(f"note: {report} evaluated {evaluated}, not this checkpoint: its metrics are left out")
        except (json.JSONDecodeError, AttributeError):
            print(f"note: {report} is not a pdegen metrics file: no metrics in the card")
    training = context["training"]
    configs = sorted(run.glob("logs/*/config.yaml"), key=lambda p: p.stat().st_mtime) + \
        [p for p in (run / "config.yaml",) if p.is_file()]
    if configs:
        try:
            config = yaml.safe_load(configs[-1].read_text()) or {}
        except yaml.YAMLError:
            config = {}
        data = config.get("data") or {}
        args = data.get("init_args", data) if isinstance(data, dict) else {}
        if isinstance(data, dict) and data.get("class_path"):
            training["datamodule"] = data["class_path"]
        for key in ("file", "num_samples", "seed", "splits", "split_seed"):
            if isinstance(args, dict) and args.get(key) is not None:
                training[f"data {key}"] = args[key]
        if config.get("seed_everything") is not None:
            training["seed_everything"] = config["seed_everything"]
        training["run config"] = os.fspath(configs[-1])
    if saved.get("global_step") is not None:
        training["training steps"] = saved["global_step"]
    if (saved.get("pdegen_run") or {}).get("config_sha256"):
        training["config sha256"] = saved["pdegen_run"]["config_sha256"]
    training["checkpoint"] = os.fspath(checkpoint)
    return context


# ---------------------------------------------------------------------------------------------- writing
def _write_folder(folder: Path, files: dict[str, Any], overwrite: bool) -> None:
    """Write ``files`` (name -> bytes, or a callable writing to a path) into a temporary sibling folder,
    flush them, and rename it to ``folder`` (an existing non-empty folder only with ``overwrite``)."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and not overwrite:
        raise FileExistsError(f"{os.fspath(folder)!r} exists and is not empty: pass overwrite=True "
                              "(--overwrite) to replace it, or save elsewhere")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    old = None
    try:
        for name, content in files.items():
            path = tmp / name
            if callable(content):
                content(path)
            else:
                path.write_bytes(content)
            with open(path, "rb") as file:
                os.fsync(file.fileno())
        if folder.exists():
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
            else:
                old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
                os.replace(folder, old)
        os.replace(tmp, folder)
        fsync_folder(folder.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def save_pretrained(module: nn.Module | str | os.PathLike, folder: str | os.PathLike,
                    metrics: dict[str, float] | None = None, overwrite: bool = False,
                    training: dict[str, Any] | None = None, teacher: str | os.PathLike | None = None,
                    hparams: Mapping[str, Any] | None = None, loaded: nn.Module | None = None) -> Path:
    """Write ``module`` to ``folder`` as model.safetensors, config.json and a README.md model card.

    Args:
        module: a module built from a config (its hyperparameters are JSON), or a pdegen checkpoint path:
            then the module is ``pdegen.load(path)`` (or ``loaded``, already loaded from it), its config the
            checkpoint's hyperparameters, and the run folder around it gives the card its test metrics
            (``report/metrics.json``, if it evaluated this checkpoint) and training data (``config.yaml``).
        metrics: test metrics for the card and config.json (e.g. a ``pdegen test`` run's
            ``report/metrics.json`` ``"metrics"``); replace the run's.
        overwrite: replace an existing non-empty ``folder`` (refused otherwise).
        training: what is known of the training data and run (file, num_samples, seed, steps, ...) for the card.
        teacher: a student's teacher checkpoint where it moved since training (its hyperparameters and class
            are recorded; its weights come from the student's own state).
        hparams: the constructor arguments to record in place of ``module.hparams``.

    A student's teacher checkpoint must be readable now. Returns ``folder``.
    """
    from safetensors.torch import save

    folder = Path(folder)
    if isinstance(module, (str, os.PathLike)):
        from pdegen.modules.checkpoints import _weights_only
        from pdegen.modules.checkpoints import load as load_checkpoint

        path = Path(module)
        module = loaded if loaded is not None else load_checkpoint(path)
        saved = torch.load(path, map_location="cpu", weights_only=_weights_only(path), mmap=True)
        if hparams is None:
            hparams = saved.get("hyper_parameters", {})
        context = run_context(path, saved)
        metrics = metrics if metrics is not None else context["metrics"]
        training = context["training"] | dict(training or {})
    config = make_config(module, teacher, training, metrics, hparams)
    weights = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    seen: dict[int, str] = {}
    for key, value in list(weights.items()):  # safetensors refuses tensors sharing memory
        pointer = value.untyped_storage().data_ptr() if value.numel() else -1
        if pointer in seen and pointer != -1:
            weights[key] = value.clone()
        seen.setdefault(pointer, key)
    metadata = {"format": "pt", "module": config["module"], "pdegen_version": __version__}
    files = {WEIGHTS: save(weights, metadata=metadata), CONFIG: json.dumps(config, indent=2).encode(),
             CARD: model_card(config).encode()}
    _write_folder(folder, files, overwrite)
    return folder


# ---------------------------------------------------------------------------------------------- loading
def _check_class_path(class_path: str, cls: type, where: str) -> None:
    from pdegen.modules.checkpoints import module_class

    module_name, _, name = class_path.rpartition(".")
    if module_class(f"{module_name}:{name}", where) is not cls:
        raise ValueError(f"{where}: its hyperparameters name the class {class_path}, not {cls.__qualname__}")


def _checked_hparams(hparams: Any, cls: type, where: str) -> dict[str, Any]:
    if not isinstance(hparams, dict):
        raise ValueError(f"{where}: 'hparams' must be a JSON object")
    instantiator = hparams.get("_instantiator")
    if instantiator is not None and instantiator not in INSTANTIATORS:
        raise ValueError(f"{where} names the instantiator {instantiator!r}: only {INSTANTIATORS} are called")
    if "_class_path" in hparams:
        _check_class_path(str(hparams["_class_path"]), cls, where)
    return dict(hparams)


def _read_config(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise FileNotFoundError(f"pretrained folder {os.fspath(folder)!r} not found")
    path = folder / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{os.fspath(folder)!r} has no {CONFIG}: not a pdegen pretrained folder (write one "
                                "with pdegen.save_pretrained or python -m pdegen.export --format pretrained)")
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{os.fspath(path)!r} is not valid JSON ({error}): the folder is damaged") from error
    if not isinstance(config, dict) or not isinstance(config.get("module"), str) or "hparams" not in config:
        raise ValueError(f"{os.fspath(path)!r} does not name a module class and its hyperparameters "
                         "('module', 'hparams'): not a pdegen pretrained config, or damaged")
    return config


def _read_weights(folder: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    path = folder / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{os.fspath(folder)!r} has no {WEIGHTS}: the module's weights are missing")
    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises its own SafetensorError on a damaged file
        raise ValueError(f"{os.fspath(path)!r} could not be read as safetensors ({error}): the file is damaged") \
            from error


def _checkpoint_file(path: Path, hparams: dict[str, Any], state: dict[str, Tensor], record: Any) -> Path:
    torch.save({"state_dict": state, "hyper_parameters": hparams, "pdegen": record if isinstance(record, dict) else {},
                "pytorch-lightning_version": L.__version__}, path)
    return path


def from_pretrained(folder: str | os.PathLike, **overrides: Any) -> L.LightningModule:
    """The module a :func:`save_pretrained` folder holds, on the CPU in eval mode: ``.sample(n)`` for a
    generator, ``model(points)`` for a PINN. Its class is read from config.json and imported only if it is
    pdegen's or already imported (as :func:`pdegen.load`); its weights are loaded from model.safetensors
    (strictly: every key, nothing else); a student's teacher is rebuilt from the recorded config and the
    weights under its prefix. ``overrides`` go to the constructor (as ``load_from_checkpoint``'s)."""
    from pdegen.modules.checkpoints import load_module, module_class

    folder = Path(folder)
    config = _read_config(folder)
    where = os.fspath(folder / CONFIG)
    cls = module_class(config["module"], where)
    if not (isinstance(cls, type) and issubclass(cls, L.LightningModule)):
        raise TypeError(f"{where} names {config['module']}, which is not a LightningModule")
    hparams = _checked_hparams(config["hparams"], cls, where)
    weights = _read_weights(folder)
    with tempfile.TemporaryDirectory(prefix="pdegen-pretrained-") as scratch:
        teacher = config.get("teacher")
        if teacher and not {"teacher", "distillation"} & set(overrides):
            try:
                prefix, key_prefix = teacher["weights_prefix"], teacher["checkpoint_prefix"]
                teacher_cls = module_class(teacher["module"], f"{where} (teacher)")
                teacher_hparams = _checked_hparams(teacher["hparams"], teacher_cls, f"{where} (teacher)")
                location = tuple(teacher["hparam"])
            except (KeyError, TypeError) as error:
                raise ValueError(f"{where}: its 'teacher' section is incomplete ({error!r}): the folder is "
                                 "damaged") from error
            state = {key_prefix + k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
            if not state:
                raise ValueError(f"{os.fspath(folder / WEIGHTS)!r} holds no teacher weights under {prefix!r}, "
                                 "which config.json says it has: the folder is damaged")
            path = _checkpoint_file(Path(scratch) / "teacher.ckpt", teacher_hparams, state, teacher.get("pdegen"))
            if _get(hparams, location) is None:
                raise ValueError(f"{where}: the hyperparameters have no teacher at {'.'.join(location)}")
            hparams = json.loads(json.dumps(hparams))
            _set(hparams, location, os.fspath(path))
        checkpoint = _checkpoint_file(Path(scratch) / "model.ckpt", hparams, weights, config.get("pdegen"))
        try:
            module = load_module(cls, checkpoint, **overrides)
        except RuntimeError as error:
            if "state_dict" in str(error):
                raise ValueError(f"the weights in {os.fspath(folder / WEIGHTS)!r} do not fit {cls.__name__} built "
                                 f"from {where}: {error}") from error
            raise
    return module.eval()
