#!/usr/bin/env bash
# The main job on the built-in default data (2 CPU cores, about 16 minutes):
#   data    a small Darcy set from pdegen's own solver (on first use, cached in data/);
#   teacher an EDM diffusion teacher (runs/quickstart), evaluated: residual, MMSE/SMSE, NFE, time;
#   PIDDM   a one-step student distilled from the teacher's (noise, sample) pairs with the PDE residual of
#           its own output in the loss (runs/quickstart_piddm);
#   report  the student next to its teacher's Euler and Heun samples from the same noise (residual,
#           MMSE/SMSE, NFE, ms per sample, speed-up), and the forward / inverse / reconstruction tasks.
# Every method against every baseline, on four families: python tools/compare_piddm.py --scale cpu
# Run from the repository root with pdegen installed (see README). Extra arguments go to every pdegen call.
set -euo pipefail
export WANDB_MODE="${WANDB_MODE:-offline}"
teacher=lightning_configs/quickstart/darcy.yaml
student=lightning_configs/quickstart/piddm_darcy.yaml
pdegen fit --config "$teacher" "$@"
pdegen test --config "$teacher" --ckpt_path last "$@"
pdegen fit --config "$student" "$@"
pdegen test --config "$student" --ckpt_path last "$@"
report=runs/quickstart_piddm/report
echo
cat "$report/report.md"
python - "$report" <<'PY'
import json, sys
from pathlib import Path
print("\n| task | relative L2 (sought channels) | PDE residual, interior (relative) | NFE | ms per sample |")
print("|---|---|---|---|---|")
for path in sorted(Path(sys.argv[1]).glob("task_*.json")):
    m = json.loads(path.read_text())["metrics"]
    errors = ", ".join(f"{k.split('/')[1]} {v:.3g}" for k, v in m.items() if k.startswith("rel_l2/"))
    print(f"| {path.stem[5:]} | {errors} | {m['residual_interior_rel']:.3g} | {m['nfe']:.0f} | "
          f"{1e3 * m['seconds_per_sample']:.1f} |")
PY
echo
echo "teacher report: runs/quickstart/report/report.md; student report and figures: $report/"
