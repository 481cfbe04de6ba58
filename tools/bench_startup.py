"""Start-up time of the command-line tools: ``pdegen --help`` and ``pdegen-data --help``, each beside the
import it cannot avoid (``lightning`` for the LightningCLI, ``torch`` for the PDE families), in this process's
Python, best of ``--repeats`` fresh processes.

    python tools/bench_startup.py --repeats 5

Also lists the heavy libraries each tool imports beyond that floor (none is the goal: they are imported
where they are used).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence

HEAVY = ("torch", "lightning", "torchmetrics", "matplotlib", "scipy.linalg", "scipy.signal", "scipy.io", "neuralop",
         "wandb", "onnxruntime", "pandas")
"""Libraries that take a noticeable part of a second or more to import."""

TOOLS = {  # tool: (its --help command as a module, its entry module, the import it cannot avoid)
    "pdegen": ("pdegen.cli", "lightning"),
    "pdegen-data": ("pdegen.data_cli", "torch"),
}


def heavy_imports_beyond(floor: str, module: str) -> set[str]:
    """The :data:`HEAVY` libraries that importing ``module`` adds, in a fresh process, to those ``floor`` imports."""
    code = (f"import sys; import {floor}; before = set(sys.modules); import {module}; "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules and m not in before))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def best_seconds(args: Sequence[str], repeats: int) -> float:
    """Best wall-clock seconds of ``repeats`` fresh ``python <args>`` processes."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], capture_output=True, check=True)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per command (best is reported)")
    parser.add_argument("--tools", nargs="+", choices=list(TOOLS), default=list(TOOLS))
    args = parser.parse_args(argv)
    rows = []
    print("| command | seconds | floor | seconds of the floor | overhead | heavy imports beyond the floor |")
    print("|---|---|---|---|---|---|")
    for tool in args.tools:
        module, floor = TOOLS[tool]
        seconds = best_seconds(["-m", module, "--help"], args.repeats)
        floor_seconds = best_seconds(["-c", f"import {floor}"], args.repeats)
        extra = sorted(heavy_imports_beyond(floor, module))
        rows.append({"command": f"{tool} --help", "seconds": seconds, "floor": floor, "floor_seconds": floor_seconds,
                     "heavy_beyond_floor": extra})
        print(f"| `{tool} --help` | {seconds:.2f} | `import {floor}` | {floor_seconds:.2f} | "
              f"{seconds / floor_seconds:.2f}x | {', '.join(extra) or 'none'} |")
    return rows


if __name__ == "__main__":
    main()
