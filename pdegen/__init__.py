"""pdegen: physics-constrained generative models of PDE fields on PyTorch Lightning."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``pdegen.load(path)``: the module a checkpoint holds (:func:`pdegen.modules.checkpoints.load`),
    imported on first use so that ``import pdegen`` stays light."""
    if name == "load":
        from pdegen.modules.checkpoints import load

        return load
    raise AttributeError(f"module 'pdegen' has no attribute {name!r}")
