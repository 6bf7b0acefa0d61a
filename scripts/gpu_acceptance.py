"""One command that proves or disproves the CUDA path on a GPU, without the 17 GB download.

    python scripts/gpu_acceptance.py --out gpu-report             # on a machine with an NVIDIA GPU
    python scripts/gpu_acceptance.py --dry-run --out /tmp/dry     # anywhere: proves the script itself

It builds the released-size model with random weights directly on the GPU, runs ten independent
checks (environment, the tests/gpu tier, capture, graph against eager, sampling in the graph, speed,
memory, layer offload, the inference worker live, Mimi on the GPU), prints a line per check and
writes gpu_report.json, gpu_report.md, gpu_tests.xml/.log, offload_trace.json and
gpu_acceptance.log into --out: copy that folder back. About 8 minutes on one datacenter GPU.

The dry run runs every check that can run without CUDA on the tiny make-tiny-model architecture
on the CPU and marks the rest "needs CUDA". Exit code: 0 when nothing failed, 1 otherwise, 2 for
bad arguments or no GPU without --dry-run.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the `acceptance` package beside this file

BUDGET_S = 480


def _selection(text: str | None, ids: list[int]) -> list[int]:
    if not text:
        return ids
    chosen: set[int] = set()
    for item in text.split(","):
        lo, _, hi = item.strip().partition("-")
        try:
            chosen.update(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            raise SystemExit(f"--checks takes numbers and ranges such as 3,6-8, got {text!r}") from None
    unknown = sorted(chosen - set(ids))
    if unknown:
        raise SystemExit(f"--checks: there is no check {unknown[0]} (checks are 1-{max(ids)})")
    return sorted(chosen)


def _git(repo: Path) -> str:
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "no git"
    return (head + ("+changes" if dirty else "")) if head else "no git"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the report (created)")
    parser.add_argument("--dry-run", action="store_true", help="on the CPU, tiny architecture: prove the script")
    parser.add_argument("--checks", help="run only these, e.g. 3,6-8 (default: all ten)")
    parser.add_argument("--device", default=None, help="the CUDA device to test (default: cuda)")
    args = parser.parse_args(argv)

    import torch
    from acceptance.checks import CHECKS
    from acceptance.context import Run
    from acceptance.report import ERROR, FAIL, run_checks, write_report

    import ppx_desktop

    if not args.dry_run and not torch.cuda.is_available():
        why = ("this PyTorch is a CPU-only build: install a CUDA build of torch" if torch.version.cuda is None
               else "no NVIDIA GPU is visible (check nvidia-smi)")
        print(f"gpu_acceptance: {why}. Use --dry-run to check the script itself on the CPU.", file=sys.stderr)
        return 2
    selected = _selection(args.checks, [c.id for c in CHECKS])
    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=out / "gpu_acceptance.log", filemode="w", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_grad_enabled(False)  # this thread's frames record no autograd graph (the worker sets its own)
    if args.dry_run:
        torch.set_num_threads(1)  # tiny models run fastest on one thread
    run = Run(out, args.dry_run, args.device)
    device = (torch.cuda.get_device_name(run.device) if run.cuda else "CPU")
    print(f"gpu_acceptance: {'dry run' if args.dry_run else 'CUDA'} on {device}, {run.size}; report in {out}",
          flush=True)
    started, t0 = datetime.datetime.now().astimezone(), time.perf_counter()
    results = run_checks([c for c in CHECKS if c.id in selected], run, total=len(CHECKS))
    seconds = time.perf_counter() - t0
    meta = {"report_format": 1, "mode": "dry run (CPU, tiny architecture)" if args.dry_run else "CUDA",
            "device": device, "model": run.size, "torch": torch.__version__, "ppx_desktop": ppx_desktop.__version__,
            "git": _git(run.repo), "command": " ".join(sys.argv), "started": started.isoformat(timespec="seconds"),
            "seconds": round(seconds, 1), "budget_seconds": None if args.dry_run else BUDGET_S,
            "within_budget": None if args.dry_run else seconds <= BUDGET_S, "checks_run": selected}
    json_path, md_path = write_report(out, meta, results)
    bad = [r for r in results if r.status in (FAIL, ERROR)]
    print(f"gpu_acceptance: {len(results) - len(bad)}/{len(results)} checks without a failure in {seconds:.0f} s"
          + ("" if args.dry_run or seconds <= BUDGET_S else f" (over the {BUDGET_S} s budget)")
          + f"; report: {md_path} and {json_path.name}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
