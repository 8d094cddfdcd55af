"""The install: one `quartet` import namespace, and a venv that is exactly the locks.

Issue 17: transformers 5.x imports PyPI's `kernels`; a project that installs its own top-level
`kernels` (or `services`) breaks it. These tests look at what a wheel of the project holds, at
what resolves from a directory outside the checkout, at every import in our sources, and at the
venv `make` built against locks/.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import locks  # noqa: E402  (tools/ is a folder of scripts)

PACKAGE = ROOT / "quartet"
FOREIGN = ("services", "kernels")  # names PyPI already has; ours live under quartet.


def project_modules() -> list[str]:
    """Dotted names of every module under quartet/, the generated gRPC code included."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        names.append(".".join(parts))
    return names


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    # From a copy: setuptools builds in ./build, where files left from an older build would ship too.
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "quartet"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if name == "quartet" else {}))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("quartet-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_installs_nothing_but_quartet(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/")[0] for name in wheel.namelist()}
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - dist_info == {"quartet"}, f"top-level names in the wheel: {sorted(tops)}"
    top_level = [n for n in wheel.namelist() if n.endswith(".dist-info/top_level.txt")]
    for listing in top_level:  # setuptools writes it; the names `import` will see
        assert wheel.read(listing).decode().split() == ["quartet"]


def test_the_wheel_holds_every_module_and_data_file(wheel: zipfile.ZipFile) -> None:
    held = set(wheel.namelist())
    sources = [p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts]
    missing = [s for s in sources if s not in held]
    assert not missing, f"modules left out of the wheel: {missing[:10]}"
    # Generated gRPC code and the playground's files ship as package data.
    for needed in (
        "quartet/engine/v1/engine_pb2.py",
        "quartet/engine/v1/engine_pb2_grpc.py",
        "quartet/memory/v1/memory_pb2.py",
        "quartet/router/v1/router_pb2.py",
        "quartet/services/gateway/static/playground.html",
    ):
        assert needed in held, needed
    # Benchmarks and sweeps live in the checkout's benchmarks/, never in what users install.
    shipped = [n for n in held if n.startswith("benchmarks/") or re.search(r"(^|/)(bench_[^/]*|sweep[^/]*)\.py$", n)]
    assert not shipped, f"benchmark code in the wheel: {shipped[:10]}"


def test_no_project_module_resolves_under_another_top_level_name(tmp_path: Path) -> None:
    """From a folder outside the checkout, every tail of every module path (``services.gateway.app``,
    ``gateway.app``, ``kernels.mxfp4``, ``mxfp4`` ...) is either absent or not ours."""
    tails = sorted({".".join(m.split(".")[i:]) for m in project_modules() for i in range(1, len(m.split(".")))})
    script = textwrap.dedent(
        f"""
        import importlib.util, json, sys
        root = {str(ROOT)!r}
        found = {{}}
        for name in {tails!r}:
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError):  # a parent that is not a package, or is absent
                continue
            places = [spec.origin or "", *(spec.submodule_search_locations or [])] if spec else []
            ours = [p for p in places if p.startswith(root + "/") and not p.startswith(sys.prefix + "/")]
            if ours:
                found[name] = ours
        import quartet.services.gateway.app, quartet.kernels, quartet.engine.v1.engine_pb2  # ours, by their names
        print(json.dumps(found))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "{}", f"project modules importable outside quartet: {done.stdout}"


def test_pypi_kernels_and_transformers_work_beside_ours(tmp_path: Path) -> None:
    """transformers 5.x depends on PyPI's `kernels` (locks/cpu.txt pins it): both import, and ours
    never stands in for it, from outside the checkout or from its root (pytest's rootdir)."""
    script = textwrap.dedent(
        """
        import kernels, transformers, quartet.kernels
        from transformers import AutoConfig, LlamaForCausalLM
        assert "site-packages" in kernels.__file__, kernels.__file__
        assert quartet.kernels.__file__ != kernels.__file__
        print(kernels.__file__)
        """
    )
    for cwd in (tmp_path, ROOT):
        subprocess.run([sys.executable, "-c", script], cwd=cwd, check=True, capture_output=True, text=True)


def _imported_names(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_no_source_imports_a_bare_services_or_kernels() -> None:
    offenders = []
    for folder in ("quartet", "tests", "tools"):
        for path in (ROOT / folder).rglob("*.py"):
            for name in _imported_names(ast.parse(path.read_text(), str(path))):
                if name.split(".")[0] in FOREIGN:
                    offenders.append(f"{path.relative_to(ROOT)}: import {name}")
    assert not offenders, offenders


def test_every_python_m_names_a_quartet_module() -> None:
    """`python -m X` in the Makefile, compose.yaml, the Dockerfile, the README and the code names a
    module that exists under quartet/ (a stale `services.engine` would fail only at run time)."""
    modules = set(project_modules())
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    files = [f for f in tracked if f.endswith((".py", ".md", ".yaml", ".sh")) or f in ("Makefile", "Dockerfile")]
    pattern = re.compile(r"""-m["',\s]+((?:quartet|services|kernels)(?:\.\w+)+)""")
    seen, bad = 0, []
    for f in files:
        if f.startswith("docs/"):  # the performance log quotes commands as they were run then
            continue
        for m in pattern.finditer((ROOT / f).read_text(errors="replace")):
            seen += 1
            if m.group(1) not in modules:
                bad.append(f"{f}: -m {m.group(1)}")
    assert seen > 10, "the pattern found almost no `python -m` lines: is it still right?"
    assert not bad, bad


def test_this_venv_is_exactly_the_locks() -> None:
    """What `make` installed is the CPU locks' pins, nothing more or less, and they agree (pip check).
    Under `make check-latest` the venv is the candidate locks' (QUARTET_LOCK_DIR), not locks/."""
    folder = Path(os.environ.get("QUARTET_LOCK_DIR") or locks.LOCKS)
    lock_files = [folder / f"{n}.txt" for n in ("cpu", "model", "embeddings")]
    assert locks.verify(lock_files, {"quartet", "pip"}) == []
    assert locks.broken_requirements(lock_files) == []


def _project_requirements(extras: tuple[str, ...]) -> list[Requirement]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    reqs, todo, done = [Requirement(r) for r in project["dependencies"]], list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in done:
            continue
        done.add(extra)
        for r in map(Requirement, optional[extra]):
            if r.name == "quartet":
                todo += sorted(r.extras)
            else:
                reqs.append(r)
    return reqs


@pytest.mark.parametrize("lock", [x for x in locks.ALL if x.with_project], ids=lambda x: x.name)
def test_each_lock_satisfies_pyproject(lock: locks.Lock) -> None:
    """A range changed in pyproject.toml without `make lock` fails here, for every image's lock."""
    pinned = locks.pins((locks.LOCKS / f"{lock.name}.txt").read_text())
    wrong = []
    for req in _project_requirements(lock.extras):
        version = pinned.get(locks.canonical(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            wrong.append(f"{req} -> {version}")
    assert not wrong, f"locks/{lock.name}.txt out of date (run `make lock`): {wrong}"


def test_the_dockerfile_installs_from_locks() -> None:
    text = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"pip install ([^&\n]*)", text)
    assert installs
    for args in installs:
        assert "--no-deps" in args, f"an install that resolves on its own: pip install {args}"
        named = re.findall(r"-r (\S+)", args)
        assert named or args.rstrip(" \\").endswith(" ."), f"an install not from a lock: pip install {args}"
        for lock in named:
            lock = lock.replace("${ENGINE_LOCK}", "gpu")
            assert (ROOT / lock).is_file(), lock
