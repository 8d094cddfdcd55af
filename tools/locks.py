"""The lock files in locks/: compile them, say what moved, check a venv against one.

    python tools/locks.py compile [--upgrade] # `make lock` (fewest moves) / `make upgrade` (newest allowed)
    python tools/locks.py diff OLD NEW       # the pins that moved between two lock files
    python tools/locks.py verify LOCK...     # this interpreter's installed packages == the locks' pins

pyproject.toml holds the ranges (with upper bounds where a major release is known to break
us); the locks pin every transitive package to one version with its hashes, so two installs
a month apart are the same install. Each lock is for one interpreter and platform: the CPU
venv that `make` builds (Python 3.11, Linux x86_64, torch's CPU build), and each image of the
Dockerfile (the engine's on PyPI's CUDA build of torch). Standard library only: it runs
before anything is installed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "locks"
INDEX = "https://pypi.org/simple"
PLATFORM = "x86_64-manylinux_2_28"


@dataclass(frozen=True)
class Lock:
    name: str
    python: str
    extras: tuple[str, ...] = ()
    #: requirement files compiled instead of (or beside) pyproject.toml
    inputs: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    #: extra flags for `uv pip compile` (``--no-deps`` for wheels installed without their deps)
    flags: tuple[str, ...] = ()
    with_project: bool = True


# The CPU build of torch lies in /opt/wheels on this project's machines (pip finds it through
# its find-links setting); elsewhere it comes from https://download.pytorch.org/whl/cpu.
TORCH_CPU_FIND_LINKS = ("--find-links", "/opt/wheels", "--no-emit-find-links")

ALL = (
    Lock("cpu", "3.11", ("all", "dev"), ("build.in",), ("torch-cpu.in",), TORCH_CPU_FIND_LINKS),
    # Installed with --no-deps: these wheels declare packages we never use (see the .in files).
    Lock("model", "3.11", inputs=("model.in",), flags=("--no-deps",), with_project=False),
    Lock("embeddings", "3.11", inputs=("embeddings.in",), flags=("--no-deps",), with_project=False),
    Lock("gpu", "3.12", ("engine", "kernels"), ("build.in",), ("torch-gpu.in",)),
    Lock("gpu-vllm", "3.12", ("engine", "kernels", "vllm"), ("build.in",), ("torch-gpu.in",)),
    Lock("gateway", "3.11", ("gateway",), ("build.in",)),
    Lock("router", "3.11", ("router",), ("build.in",)),
    Lock("memory", "3.11", ("memory", "memory-retrieval"), ("build.in",)),
    Lock("protogen", "3.11", inputs=("protogen.in",), with_project=False),
)

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s\\;]+)", re.M)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    return {canonical(m.group(1)): m.group(3) for m in PIN.finditer(text)}


def moved(old: dict[str, str], new: dict[str, str]) -> list[str]:
    lines = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if before is None:
            lines.append(f"  + {name} {after}")
        elif after is None:
            lines.append(f"  - {name} {before}")
        else:
            lines.append(f"  ~ {name} {before} -> {after}")
    return lines


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if not found:
        raise SystemExit("uv is not installed: run `make setup` first (the dev extra pins it)")
    return found


def compile_lock(lock: Lock, upgrade: bool, out: Path | None = None) -> list[str]:
    """Write ``out`` (default locks/<name>.txt) and return the pins that moved from locks/<name>.txt."""
    current = LOCKS / f"{lock.name}.txt"
    out = out or current
    if out != current and current.exists() and not upgrade:
        shutil.copyfile(current, out)  # uv keeps the pins of an existing output file where it can
    sources = (["pyproject.toml"] if lock.with_project else []) + [f"locks/{i}" for i in lock.inputs]
    cmd = [uv(), "pip", "compile", *sources, "--python-version", lock.python, "--python-platform", PLATFORM,
           "--generate-hashes", "--index-url", INDEX, "--no-header", "--quiet", "-o", str(out)]
    for extra in lock.extras:
        cmd += ["--extra", extra]
    for c in lock.constraints:
        cmd += ["--constraint", f"locks/{c}"]
    cmd += list(lock.flags)
    if upgrade:
        cmd.append("--upgrade")  # otherwise uv keeps the pins already in `out` where they still satisfy
    before = pins(current.read_text()) if current.exists() else {}
    header = (f"# Lock for {lock.name}: Python {lock.python}, {PLATFORM}. Made by `make lock`"
              " (tools/locks.py) from pyproject.toml and locks/*.in; never edit by hand.\n")
    subprocess.run(cmd, cwd=ROOT, check=True)
    text = header + out.read_text()
    out.write_text(text)
    after = pins(text)
    changes = moved(before, after)
    print(f"{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}: {len(after)} pins, "
          f"{len(changes)} moved from locks/{current.name}")
    for line in changes:
        print(line)
    return changes


def installed() -> dict[str, str]:
    from importlib.metadata import distributions

    return {canonical(d.metadata["Name"]): d.version for d in distributions()}


def verify(locks: list[Path], ignore: set[str]) -> list[str]:
    """Differences between this interpreter's packages and the pins (empty when they agree)."""
    want: dict[str, str] = {}
    for path in locks:
        want.update(pins(path.read_text()))
    have = {n: v for n, v in installed().items() if n not in ignore}
    return moved(want, have)


def broken_requirements(locks: list[Path]) -> list[str]:
    """`pip check`'s complaints, less those of the wheels a lock installs with --no-deps on purpose."""
    no_deps = {x.name for x in ALL if "--no-deps" in x.flags}
    exempt = {n for path in locks if path.stem in no_deps for n in pins(path.read_text())}
    report = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True).stdout
    return [line for line in report.splitlines()
            if line.strip() and "No broken requirements" not in line and canonical(line.split()[0]) not in exempt]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compile", help="recompile the locks")
    c.add_argument("--upgrade", action="store_true", help="newest allowed versions, not the least change")
    c.add_argument("names", nargs="*", help=f"which locks (default all: {', '.join(x.name for x in ALL)})")
    d = sub.add_parser("diff", help="the pins that moved from OLD to NEW")
    d.add_argument("old", type=Path)
    d.add_argument("new", type=Path)
    v = sub.add_parser("verify", help="fail unless this interpreter has exactly the locks' pins")
    v.add_argument("locks", nargs="+", type=Path)
    v.add_argument("--ignore", action="append", default=[], help="a package not in the locks (the project)")
    args = ap.parse_args(argv)
    if args.cmd == "compile":
        chosen = [x for x in ALL if not args.names or x.name in args.names]
        unknown = set(args.names) - {x.name for x in ALL}
        if unknown:
            raise SystemExit(f"no lock named {sorted(unknown)}; locks: {[x.name for x in ALL]}")
        for lock in chosen:
            compile_lock(lock, args.upgrade)
        return 0
    if args.cmd == "diff":
        lines = moved(pins(args.old.read_text()), pins(args.new.read_text()))
        print("\n".join(lines) if lines else "  (nothing moved)")
        return 0
    diff = verify(args.locks, {canonical(n) for n in args.ignore})
    if diff:
        print("installed packages differ from the locks (- locked, not installed; + installed, not locked):")
        print("\n".join(diff))
        return 1
    broken = broken_requirements(args.locks)
    if broken:
        print("the locks' packages do not satisfy each other (pip check):")
        print("\n".join(broken))
        return 1
    print(f"installed packages match {', '.join(str(p) for p in args.locks)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
