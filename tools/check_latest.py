"""`make check-latest`: the upstream canary. Would the newest allowed versions break us?

Compiles the CPU lock afresh with ``--upgrade`` (the newest versions pyproject.toml's ranges
allow, exactly what `make upgrade` would write now) into a throwaway folder, installs it into an
empty venv with an empty pip cache, runs the fast tests (everything but e2e) there, and prints
which packages moved. Nothing in the checkout changes. On success, `make upgrade` takes the same
versions; on failure, the moved packages are the suspects: tighten a range in pyproject.toml
(an upper bound, with a comment saying why) and run it again.

    python tools/check_latest.py [--keep] [-- PYTEST_ARGS...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import locks  # noqa: E402  (tools/ is a folder of scripts, not a package)

ROOT = locks.ROOT


def run(cmd: list[str], **kw) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, **kw)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="keep the throwaway venv and print where it is")
    ap.add_argument("pytest_args", nargs="*", help='after "--": pytest arguments (default: -m "not e2e" -x)')
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="quartet-latest-"))
    venv, cache = work / "venv", work / "pip-cache"
    env = {**os.environ, "PIP_CACHE_DIR": str(cache)}
    print(f"throwaway venv and pip cache in {work}")
    moved: list[str] = []
    for name in ("cpu", "model", "embeddings"):
        lock = next(x for x in locks.ALL if x.name == name)
        print(f"== newest allowed for locks/{name}.txt")
        moved += locks.compile_lock(lock, upgrade=True, out=work / f"{name}.txt")
    py = venv / "bin" / "python"
    run([sys.executable, "-m", "venv", str(venv)])
    torch_index = [] if list(Path("/opt/wheels").glob("torch-2.13.0+cpu-*")) else [
        "--extra-index-url", "https://download.pytorch.org/whl/cpu"]
    started = time.monotonic()
    run([str(py), "-m", "pip", "install", "-q", "--require-hashes", "--no-deps", *torch_index,
         "-r", str(work / "cpu.txt"), "-r", str(work / "model.txt"), "-r", str(work / "embeddings.txt")], env=env)
    run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", "."], env=env)
    run([str(py), str(ROOT / "tools" / "locks.py"), "verify", *(str(work / f"{n}.txt") for n in ("cpu", "model", "embeddings")),
         "--ignore", "quartet", "--ignore", "pip"], env=env)
    print(f"installed in {time.monotonic() - started:.0f} s")
    # The install test compares the venv with these candidate locks, not with locks/.
    tests = subprocess.run([str(py), "-m", "pytest", "-q", *(args.pytest_args or ["-m", "not e2e", "-x"])],
                           cwd=ROOT, env={**env, "QUARTET_LOCK_DIR": str(work)})
    # The editable install in the throwaway venv registered this checkout; the real venv's own
    # registration is unaffected (each venv has its own .pth finder).
    print("\n== packages that moved against locks/ (what `make upgrade` would change)")
    print("\n".join(moved) if moved else "  (nothing moved: the locks are the newest allowed)")
    verdict = "PASS: `make upgrade` is safe to run" if tests.returncode == 0 else (
        f"FAIL (pytest exit {tests.returncode}): the packages above are the suspects; keep the locks as they are")
    print(f"\n{verdict}")
    if args.keep:
        print(f"kept {venv}")
    else:
        subprocess.run(["rm", "-rf", str(work)])
    return tests.returncode


if __name__ == "__main__":
    sys.exit(main())
