"""The embedded demo (`evoprune run`: 2 runs x 200 evaluations) as whole processes, two versions side by side.

Run: python -m evoprune.benchmarks.bench_demo [--old 1fd2d0d] [--new WORKTREE] [--repeats 3]
     [--scratch DIR] [--extra-args "--workers 0"]
Each version is installed from its own source (`git archive REF`, or the working tree's tracked and
untracked-but-not-ignored files for WORKTREE) into its own scratch virtual environment, with `pip install
--no-deps --no-build-isolation`; the third-party packages come from the environment running this script
(a .pth file puts its site-packages after the scratch one), so each version runs its own code on the same
libraries. The runs alternate old, new, new, old, old, new, ... so that a drift in the machine's load
falls on both. Measured per run: whole-process wall time (spawn to exit), and the driver's peak RSS and
user CPU by polling the `evoprune` process with psutil every POLL_S (the Ray processes it starts are
separate processes and are not counted; their summed peak is reported apart). The last line printed is
one JSON object: per version the runs, the median and the spread (min, max), and the new/old ratios of the
medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Final, TypedDict

import psutil

DEFAULT_OLD = "1fd2d0d"
WORKTREE = "WORKTREE"
POLL_S = 0.2
RUN_TIMEOUT_S = 1800
MIB = 1 << 20


def repository_root() -> Path:
    """The git work tree this script is run from (the benchmark needs the project's history)."""
    out = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def export_source(repo: Path, ref: str, target: Path) -> str:
    """Write one version's source files to `target`; returns the commit (plus "+changes" for WORKTREE)."""
    target.mkdir(parents=True)
    if ref == WORKTREE:
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=repo,
            capture_output=True,
            check=True,
        ).stdout.split(b"\0")
        for name in filter(None, (entry.decode() for entry in listed)):
            source = repo / name
            if source.is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target / name)
        head = _git(repo, "rev-parse", "--short", "HEAD")
        dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
        return head + ("+changes" if dirty else "")
    archive = target.parent / f"{target.name}.tar"
    with archive.open("wb") as handle:
        subprocess.run(["git", "archive", ref], cwd=repo, stdout=handle, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    archive.unlink()
    return _git(repo, "rev-parse", "--short", ref)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def install(source: Path, venv: Path) -> Path:
    """A scratch venv holding only this version of evoprune, on this interpreter's third-party packages.

    Returns:
        The venv's `evoprune` script.

    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    scratch_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # a plain path in a .pth file: appended after the venv's own site-packages, and the .pth files inside
    # it (the editable install of the checkout) are not run, so the venv's evoprune is the one imported
    Path(scratch_site, "zz_base_site_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    built = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", str(source)],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:  # the build backend's warnings are shown only when the install fails
        raise RuntimeError(f"installing {source} failed:\n{built.stdout}{built.stderr}")
    return venv / "bin" / "evoprune"


class DemoRun(TypedDict):
    """One `evoprune run` of the demo: wall time, the driver's peak RSS and CPU, what the run reported."""

    wall_s: float
    driver_peak_rss_mb: float
    driver_user_cpu_s: float
    driver_system_cpu_s: float
    process_tree_peak_rss_mb: float
    experiment_wall_s: float  # summary.json's wall_time_s
    evaluations: int
    hypervolume: float  # the aggregated archive front's (an older summary's `hypervolume`)


class Spread(TypedDict):
    """Median and range of one figure over a version's runs."""

    median: float
    min: float
    max: float


class Version(TypedDict):
    """One version compared: the ref asked for, its commit, its installed command and its runs."""

    ref: str
    commit: str
    script: Path
    runs: list[DemoRun]


# the figures `describe` summarises
DESCRIBED: Final = (
    "wall_s",
    "driver_peak_rss_mb",
    "driver_user_cpu_s",
    "process_tree_peak_rss_mb",
    "experiment_wall_s",
)


def timed_run(script: Path, out: Path, extra: list[str], cwd: Path) -> DemoRun:
    """One whole `evoprune run` process: wall time, and the driver's peak RSS and CPU (psutil polling)."""
    command = [str(script), "run", "--out", str(out), *extra]
    started = time.perf_counter()
    with (cwd / f"{out.name}.log").open("w") as log:
        process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        driver = psutil.Process(process.pid)
        peak_driver = peak_tree = 0
        cpu = (0.0, 0.0)
        while process.poll() is None:
            try:
                with driver.oneshot():
                    rss = driver.memory_info().rss
                    times = driver.cpu_times()
                    children = driver.children(recursive=True)
                cpu = (times.user, times.system)
                tree = rss + sum(_rss(child) for child in children)
            except psutil.Error:  # exited between the poll and the reads
                break
            peak_driver, peak_tree = max(peak_driver, rss), max(peak_tree, tree)
            if time.perf_counter() - started > RUN_TIMEOUT_S:
                process.kill()
            time.sleep(POLL_S)
        status = process.wait()
    wall_s = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{shlex.join(command)} exited {status}; see {cwd / (out.name + '.log')}")
    summary = json.loads((out / "summary.json").read_text())
    aggregate = summary["aggregate"]
    return {
        "wall_s": round(wall_s, 2),
        "driver_peak_rss_mb": round(peak_driver / MIB, 1),
        "driver_user_cpu_s": round(cpu[0], 2),
        "driver_system_cpu_s": round(cpu[1], 2),
        "process_tree_peak_rss_mb": round(peak_tree / MIB, 1),
        "experiment_wall_s": summary.get("wall_time_s"),
        "evaluations": aggregate["evaluations"],
        "hypervolume": aggregate.get("hypervolume_archive", aggregate.get("hypervolume")),
    }


def _rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_info().rss)
    except psutil.Error:
        return 0


def describe(runs: list[DemoRun]) -> dict[str, Spread]:
    """Median and spread (min, max) of every measured figure."""
    return {
        key: {
            "median": round(statistics.median(run[key] for run in runs), 2),
            "min": min(run[key] for run in runs),
            "max": max(run[key] for run in runs),
        }
        for key in DESCRIBED
    }


def alternating_order(repeats: int) -> list[str]:
    """old, new, new, old, old, new, ...: each version in every position equally often (for even counts)."""
    pairs = [("old", "new") if index % 2 == 0 else ("new", "old") for index in range(repeats)]
    return [version for pair in pairs for version in pair]


def main(argv: list[str] | None = None) -> int:
    """Install both versions, run the demo alternately, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default=DEFAULT_OLD, help=f"git ref of the baseline (default {DEFAULT_OLD})")
    parser.add_argument(
        "--new", default=WORKTREE, help=f"git ref of the version measured, or {WORKTREE} (default)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each version (default 3)")
    parser.add_argument("--scratch", help="folder for sources, venvs and results (default: a temporary one)")
    parser.add_argument("--extra-args", default="", help="more `evoprune run` arguments, for both versions")
    args = parser.parse_args(argv)

    repo = repository_root()
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="evoprune-bench-demo-"))
    scratch.mkdir(parents=True, exist_ok=True)
    extra = shlex.split(args.extra_args)
    versions: dict[str, Version] = {}
    for label, ref in (("old", args.old), ("new", args.new)):
        commit = export_source(repo, ref, scratch / label / "src")
        script = install(scratch / label / "src", scratch / label / "venv")
        versions[label] = {"ref": ref, "commit": commit, "script": script, "runs": []}
        print(f"{label}: {ref} ({commit}) installed in {scratch / label / 'venv'}", flush=True)

    for index, label in enumerate(alternating_order(args.repeats)):
        version = versions[label]
        result = timed_run(version["script"], scratch / f"{index:02d}-{label}", extra, scratch)
        version["runs"].append(result)
        print(
            f"run {index + 1:2d} {label}: wall {result['wall_s']:7.1f} s, driver peak RSS "
            f"{result['driver_peak_rss_mb']:6.0f} MB, driver user CPU {result['driver_user_cpu_s']:5.1f} s, "
            f"hypervolume {result['hypervolume']:.4f}",
            flush=True,
        )

    stats = {label: describe(version["runs"]) for label, version in versions.items()}
    ratios = {
        key: round(stats["new"][key]["median"] / stats["old"][key]["median"], 3)
        for key in ("wall_s", "driver_peak_rss_mb", "driver_user_cpu_s")
    }
    for label in ("old", "new"):
        wall, rss = stats[label]["wall_s"], stats[label]["driver_peak_rss_mb"]
        print(
            f"{label} ({versions[label]['commit']}): wall median {wall['median']:.1f} s "
            f"[{wall['min']:.1f}, {wall['max']:.1f}], driver peak RSS median {rss['median']:.0f} MB "
            f"[{rss['min']:.0f}, {rss['max']:.0f}]"
        )
    print(
        f"new/old medians: wall {ratios['wall_s']}, driver RSS {ratios['driver_peak_rss_mb']}, "
        f"driver user CPU {ratios['driver_user_cpu_s']}"
    )
    report = {
        "benchmark": "demo",
        "command": shlex.join(["evoprune", "run", "--out", "DIR", *extra]),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": [round(value, 2) for value in os.getloadavg()],
        "rss_measured_by": f"psutil polling of the driver process every {POLL_S} s",
        "versions": {
            label: {"ref": v["ref"], "commit": v["commit"], "runs": v["runs"], **stats[label]}
            for label, v in versions.items()
        },
        "new_over_old": ratios,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
