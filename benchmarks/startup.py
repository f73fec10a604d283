"""Start-up cost of one shell `mmaif fuse` of a 640x480 pair, against `python -c "import torch"`
on the same machine (medians of --runs fresh processes).

    python benchmarks/startup.py [--runs 3] [--model DIR]

Rows: importing torch; `mmaif --version` (the CLI's own imports); `mmaif fuse` with the task
prompt (the prompt's encoding ships with the model, so the text encoder is not loaded); the
same with --prompt (the encoder is loaded); `--method gff` (no model). Target:
`mmaif fuse` without --prompt within 2.2x of importing torch.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mmaif.data.images import write_image


def timed(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr.strip()[-300:]}")
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model", help="model folder (default: the shipped one)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mmaif-startup-"))
    rng = np.random.default_rng(0)
    a = write_image(tmp / "a.png", rng.random((480, 640), np.float32))
    b = write_image(tmp / "b.png", rng.random((480, 640, 3), np.float32))
    mmaif = [sys.executable, "-m", "mmaif"]
    model = ["--model", args.model] if args.model else []
    fuse = [*mmaif, "fuse", str(a), str(b), "-o", str(tmp / "f.png"), "--task", "vif"]
    rows = [("python -c 'import torch'", [sys.executable, "-c", "import torch"]),
            ("mmaif --version", [*mmaif, "--version"]),
            ("mmaif fuse (task prompt)", [*fuse, *model]),
            ("mmaif fuse --prompt '...'", [*fuse, *model, "--prompt", "remove the noise"]),
            ("mmaif fuse --method gff", [*fuse, "--method", "gff"])]
    base = None
    print("| command (640×480 pair) | seconds | × import torch |")
    print("|---|---|---|")
    for label, cmd in rows:
        t = timed(cmd, args.runs)
        base = base or t
        print(f"| {label} | {t:.2f} | {t / base:.2f} |")


if __name__ == "__main__":
    main()
