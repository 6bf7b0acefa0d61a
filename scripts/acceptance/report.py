"""Checks made of parts, each with its pass criterion, measured values and a status; run one after
another, each isolated (an exception becomes that check's error and the next one still runs),
written as `gpu_report.json` and a Markdown table.

A status is "pass", "fail", "error" (the check could not measure: an exception, a host too busy)
or "needs CUDA" (the dry run on a CPU cannot decide it). A check takes the worst of its parts.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import time
import traceback
import typing as tp
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger("gpu_acceptance")

PASS, FAIL, ERROR, NEEDS_CUDA = "pass", "fail", "error", "needs CUDA"
STATUSES = (PASS, FAIL, ERROR, NEEDS_CUDA)
_RANK = {PASS: 0, NEEDS_CUDA: 1, FAIL: 2, ERROR: 3}


def describe(exc: BaseException) -> str:
    """`Type: message (where)`, where = the innermost frame in our code (engine, scripts)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "ppx_desktop" in f.filename or "acceptance" in f.filename]
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    text = f"{type(exc).__name__}: {exc}"
    return (text if len(text) <= 600 else text[:600] + "...") + where


@dataclass
class Part:
    name: str
    criterion: str
    status: str
    values: dict = field(default_factory=dict)


class Parts:
    """What a check records while it runs; kept when the check fails half-way.

    Args:
        cuda: False in the dry run: `cuda_only` parts then become "needs CUDA" with their values.
    """

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.parts: list[Part] = []
        self.summary = ""

    def judge(self, name: str, criterion: str, passed: bool, **values) -> bool:
        self.parts.append(Part(name, criterion, PASS if passed else FAIL, values))
        return bool(passed)

    def needs_cuda(self, name: str, criterion: str, **values) -> None:
        self.parts.append(Part(name, criterion, NEEDS_CUDA, values))

    def error(self, name: str, criterion: str, **values) -> None:
        self.parts.append(Part(name, criterion, ERROR, values))

    def cuda_only(self, name: str, criterion: str, passed: bool, **values) -> bool:
        """Judged on a GPU; in the dry run the same values are recorded as "needs CUDA"."""
        if self.cuda:
            return self.judge(name, criterion, passed, **values)
        self.needs_cuda(name, criterion, **values)
        return False

    @contextlib.contextmanager
    def guard(self, name: str, criterion: str):
        """Runs one part: an exception inside is that part's error, and the check goes on."""
        try:
            yield
        except Exception as exc:
            log.error("%s failed:\n%s", name, traceback.format_exc())
            self.error(name, criterion, error=describe(exc))


@dataclass(frozen=True)
class Check:
    id: int
    name: str
    criterion: str  # the headline pass criterion; each part states its own precisely
    run: tp.Callable[[object, Parts], None]


@dataclass
class CheckResult:
    id: int
    name: str
    criterion: str
    status: str
    summary: str
    seconds: float
    parts: list[Part]


def gib(value: float) -> str:
    """A memory figure in GiB, or MiB when small (the dry run's tiny model)."""
    return f"{value:.2f} GiB" if value >= 0.1 else f"{value * 1024:.1f} MiB"


def status_of(parts: list[Part]) -> str:
    return max((p.status for p in parts), key=_RANK.__getitem__) if parts else ERROR


def run_checks(checks: list[Check], run, total: int = 10) -> list[CheckResult]:
    """Runs each check in turn with a progress line before and after; `run.tidy()` in between."""
    results = []
    for check in checks:
        print(f"[{check.id:2d}/{total}] {check.name} ...", flush=True)
        parts = Parts(run.cuda)
        t0 = time.perf_counter()
        try:
            check.run(run, parts)
        except Exception as exc:
            log.error("check %d (%s) failed:\n%s", check.id, check.name, traceback.format_exc())
            parts.error("check", "runs to its end", error=describe(exc))
            parts.summary = parts.summary or describe(exc)
        finally:
            run.tidy()
        seconds = time.perf_counter() - t0
        result = CheckResult(check.id, check.name, check.criterion, status_of(parts.parts), parts.summary, seconds,
                             parts.parts)
        results.append(result)
        print(f"[{check.id:2d}/{total}] {result.status:<10s} {seconds:6.1f} s  {check.name}: {result.summary}",
              flush=True)
        for part in parts.parts:
            log.info("check %d part %r: %s %s", check.id, part.name, part.status, part.values)
    return results


def _plain(value):
    """JSON for numpy scalars, paths, dtypes and the like."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def write_report(out: Path, meta: dict, results: list[CheckResult]) -> tuple[Path, Path]:
    """`gpu_report.json` (everything) and `gpu_report.md` (one row per check) in `out`."""
    totals = collections.Counter(r.status for r in results)
    data = {**meta, "totals": {s: totals.get(s, 0) for s in STATUSES},
            "checks": [asdict(r) for r in results]}
    json_path, md_path = out / "gpu_report.json", out / "gpu_report.md"
    json_path.write_text(json.dumps(data, indent=1, default=_plain) + "\n", encoding="utf-8")
    md_path.write_text(markdown(meta, results, data["totals"]), encoding="utf-8")
    return json_path, md_path


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def markdown(meta: dict, results: list[CheckResult], totals: dict) -> str:
    lines = [f"# GPU acceptance run: {meta['mode']}", "",
             f"{meta['device']}; {meta['model']}; torch {meta['torch']}; ppx-desktop {meta['ppx_desktop']} "
             f"({meta['git']}); {meta['started']}; {meta['seconds']:.0f} s"
             + (f" (budget {meta['budget_seconds']} s)" if meta.get("budget_seconds") else ""), "",
             "Totals: " + ", ".join(f"{n} {s}" for s, n in totals.items() if n), "",
             "| # | check | pass criterion | measured | status |", "|---|---|---|---|---|"]
    for r in results:
        counts = collections.Counter(p.status for p in r.parts)
        mixed = f" ({', '.join(f'{n} {s}' for s, n in counts.items())} parts)" if len(counts) > 1 else ""
        row = (r.id, _cell(r.name), _cell(r.criterion), _cell(r.summary), f"**{r.status}**{mixed}")
        lines.append("| " + " | ".join(map(str, row)) + " |")
    details = [(r, p) for r in results for p in r.parts if p.status in (FAIL, ERROR)]
    if details:
        lines += ["", "## Failures and errors", ""]
        for r, p in details:
            shown = {k: v for k, v in p.values.items() if not isinstance(v, (list, dict)) or len(str(v)) < 300}
            lines.append(f"- check {r.id} ({r.name}), {p.name}: **{p.status}**. {p.criterion}. "
                         f"{_cell(json.dumps(shown, default=_plain))}")
    lines += ["", "Every part's criterion and values: gpu_report.json. Tracebacks: gpu_acceptance.log.", ""]
    return "\n".join(lines)
