"""pdegen: physics-constrained generative models of PDE fields on PyTorch Lightning."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``pdegen.load(path)``: the module a checkpoint holds (:func:`pdegen.modules.checkpoints.load`),
    ``pdegen.save_pretrained(module, folder)`` / ``pdegen.from_pretrained(folder)``
    (:mod:`pdegen.pretrained`); imported on first use so that ``import pdegen`` stays light."""
    if name == "load":
        from pdegen.modules.checkpoints import load

        return load
    if name in ("save_pretrained", "from_pretrained"):
        from pdegen import pretrained

        return getattr(pretrained, name)
    raise AttributeError(f"module 'pdegen' has no attribute {name!r}")
