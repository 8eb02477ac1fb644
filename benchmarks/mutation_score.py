"""Mutation score of the pure core: how many small planted bugs (mutants) the tests kill.

    python benchmarks/mutation_score.py [--quick] [--modules a.py,b.py] [--keep DIR] [--tests-from DIR]

mutmut (requirements-dev.txt) changes one operator, constant or call at a time in each module below and runs
the tests that cover the function it changed; a mutant the tests do not notice *survived*. The run happens
in a scratch copy of the repository (``benchmarks/out/mutation`` unless ``--keep``), so the working tree is
never touched. ``--quick`` takes four modules (about 12 minutes on two cores); the full run takes
every module (hours: the counter's tests simulate hours of frames per mutant). ``--tests-from DIR`` takes ``tests/`` from another checkout (e.g. ``git archive`` of an older
commit) to score an older suite against today's code.

mutmut leaves decorated functions alone, so the numba-compiled bin machine (``services/lines/bin_machine.py``)
is not mutated here: its rules are held by hand-computed cases in ``tests/services/lines/test_counter.py``.

Per module: mutants, killed (a test failed, or the mutant timed out), survived, and the survivors' names
(``mutmut show NAME`` in the scratch copy prints the change). The last line is one JSON object: ``modules``
(path -> mutants, killed, score, survived names), ``mutants``, ``killed`` and ``score`` over all of them.
Not part of the CI test command: it reruns the tests hundreds of times.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# module -> the tests that hold it (pure functions, or a fresh database per test); quick ones first
MODULES: dict[str, list[str]] = {
    "services/reviews/rules.py": ["tests/services/reviews/test_rules.py", "tests/services/reviews/test_rules_and_decisions.py"],
    "services/core/locations.py": ["tests/services/core/test_locations.py", "tests/services/core/test_storage_roots.py",
                                   "tests/services/faces/test_job_locations.py"],
    "services/hitl/dawid_skene.py": ["tests/services/hitl/test_dawid_skene.py", "tests/services/hitl/test_dawid_skene_exact.py",
                                     "tests/services/hitl/test_consensus.py"],
    "services/models/evaluation.py": ["tests/services/models/test_evaluation.py"],
    "services/lines/counter.py": ["tests/services/lines/test_counter.py", "tests/services/lines/test_counter_reference.py",
                                  "tests/services/lines/test_counter_independent.py", "tests/services/lines/test_counter_state.py"],
    "services/hitl/consensus.py": ["tests/services/hitl/test_consensus.py", "tests/services/hitl/test_consensus_edges.py"],
    "services/models/certify.py": ["tests/services/models/test_certify.py", "tests/services/models/test_certify_cases.py",
                                   "tests/services/models/test_certify_edges.py"],
    "services/reuse/near_copies.py": ["tests/services/reuse/test_compare.py", "tests/services/reuse/test_hard_copies.py",
                                      "tests/services/reuse/test_perspective.py",
                                      "tests/services/reuse/test_same_floor_and_stickers.py"],  # test_detection.py holds
    # them end to end too, but its 14 s workspace per mutant would make this run hours
}
QUICK = ["services/reviews/rules.py", "services/core/locations.py", "services/hitl/dawid_skene.py",
         "services/models/evaluation.py"]
KILLED = {1, 3, 24, -24, 36, 152, 255}  # a failing test, pytest's internal error, or a timeout (mutmut's own codes)
NOT_RUN = {None, 2, 5, 33, 34}  # not checked, interrupted, no tests cover it, skipped
CRASHED = {-11, -6, -7}  # the forked child died (SIGSEGV, SIGABRT, SIGBUS): OpenCV used before mutmut forks can crash
# a child whatever the mutant; such a mutant is run again in a fresh process (``_rerun_crashed``), never counted as killed


def _scratch(dest: Path, modules: list[str], tests_from: Path | None) -> None:
    """A copy of what the tests need (services, db, tests, pyproject) with mutmut's settings in setup.cfg."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "out")
    for name in ("services", "db"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    shutil.copytree((tests_from or ROOT) / "tests", dest / "tests", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")
    shared = ROOT.parent / "shared"
    if shared.is_dir():  # the tests look for ../shared beside the copy mutmut runs them in (dest/mutants)
        (dest / "shared").symlink_to(shared)
    tests = sorted({t for m in modules for t in MODULES[m] if (dest / t).exists()})
    lines = ["[mutmut]", "source_paths = services", "also_copy =", "    db", "only_mutate ="]
    lines += [f"    {m}" for m in modules]
    lines += ["pytest_add_cli_args_test_selection ="] + [f"    {t}" for t in tests]
    lines += ["pytest_add_cli_args =", "    -p", "    no:cacheprovider", "use_git_change_detection = false", ""]
    (dest / "setup.cfg").write_text("\n".join(lines))


def _rerun_crashed(dest: Path, modules: list[str], env: dict[str, str]) -> None:
    """Run each mutant whose forked child crashed again, in a process of its own (no fork), and write its real exit
    code into mutmut's .meta file."""
    for m in modules:
        meta = dest / "mutants" / (m + ".meta")
        if not meta.exists():
            continue
        data = json.loads(meta.read_text())
        codes = data["exit_code_by_key"]
        for key in [k for k, v in codes.items() if v in CRASHED]:
            proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *MODULES[m]],
                                  cwd=dest / "mutants", env={**env, "MUTANT_UNDER_TEST": key}, capture_output=True,
                                  timeout=600)
            codes[key] = proc.returncode
        meta.write_text(json.dumps(data))


def _results(dest: Path, modules: list[str]) -> dict[str, dict]:
    """Per module: mutants, killed, score and the survivors' names, from mutmut's .meta files."""
    out = {}
    for m in modules:
        meta = dest / "mutants" / (m + ".meta")
        codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
        counted = {k: v for k, v in codes.items() if v not in NOT_RUN}
        killed = sum(1 for v in counted.values() if v in KILLED)
        survived = sorted(k for k, v in counted.items() if v not in KILLED)
        untested = sorted(k for k, v in codes.items() if v in NOT_RUN)
        out[m] = {"mutants": len(counted), "killed": killed,
                  "score": round(killed / len(counted), 3) if counted else None,
                  "survived": survived, "not_run": len(untested)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the small modules only: " + ", ".join(QUICK))
    ap.add_argument("--modules", help="comma-separated module paths (default: all, or the quick ones)")
    ap.add_argument("--keep", type=Path, default=ROOT / "benchmarks" / "out" / "mutation",
                    help="scratch directory (replaced)")
    ap.add_argument("--tests-from", type=Path, help="take tests/ from this checkout instead of this one")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    modules = args.modules.split(",") if args.modules else (QUICK if args.quick else list(MODULES))
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        sys.exit(f"unknown module(s) {unknown}; known: {', '.join(MODULES)}")
    mutmut = Path(sys.executable).with_name("mutmut")
    if not mutmut.exists():
        sys.exit("mutmut not installed: pip install -r requirements-dev.txt")
    dest = args.keep.resolve()
    _scratch(dest, modules, args.tests_from)
    backbone = dest / "backbone.onnx"  # exported once: a test with a workspace would otherwise export it per mutant
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from services.models.embedder import "
                    "export_onnx; export_onnx(Path(sys.argv[1]))", str(backbone)], cwd=ROOT, check=True)
    env = {**os.environ, "REVIEW_CONSOLE_WORKER": "off", "REVIEW_CONSOLE_TEST_BACKBONE": str(backbone)}
    env.pop("CI", None)  # a mutant may break what a CI-only check guards; the score counts it either way
    t0 = time.perf_counter()
    proc = subprocess.run([str(mutmut), "run", "--max-children", str(args.jobs)], cwd=dest, env=env,
                          capture_output=True, text=True)
    (dest / "mutmut.log").write_text(proc.stdout + proc.stderr)
    _rerun_crashed(dest, modules, env)
    seconds = time.perf_counter() - t0
    results = _results(dest, modules)
    if proc.returncode != 0 and not any(r["mutants"] for r in results.values()):
        sys.exit(f"mutmut failed ({proc.returncode}); see {dest / 'mutmut.log'}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    for m, r in results.items():
        print(f"{m}: {r['killed']} of {r['mutants']} killed ({r['score']}); {r['not_run']} not run", flush=True)
        for name in r["survived"]:
            print(f"    survived: {name}")
    mutants = sum(r["mutants"] for r in results.values())
    killed = sum(r["killed"] for r in results.values())
    print(f"{seconds:.0f} s; scratch copy in {dest}")
    print(json.dumps({"modules": results, "mutants": mutants, "killed": killed,
                      "score": round(killed / mutants, 3) if mutants else None}))


if __name__ == "__main__":
    main()
