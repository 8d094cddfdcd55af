"""Build the Python code for protos/ into the ``quartet`` package (never committed).

Run as ``python -m quartet.services.common.protogen [OUT_ROOT]``. protoc keeps the
proto's package path, so ``protos/quartet/engine/v1/engine.proto`` becomes
``quartet/engine/v1/engine_pb2.py`` under OUT_ROOT (the checkout by default) and
``from quartet.engine.v1 import engine_pb2`` resolves wherever ``quartet`` does: an
editable install, a wheel, or the checkout on sys.path. The generated folders are
git-ignored and replaced whole on every run, so a proto that was removed leaves
no stale module behind.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROTO_ROOT = ROOT / "protos"


def generated_packages(proto_root: Path = PROTO_ROOT) -> list[Path]:
    """The package folders protoc writes, relative to the output root: ``quartet/<service>``."""
    protos = sorted(proto_root.rglob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {proto_root}")
    tops = {p.relative_to(proto_root).parts[:2] for p in protos}
    bad = [t for t in tops if len(t) < 2 or t[0] != "quartet"]
    if bad:
        raise SystemExit(f"protos must live under {proto_root}/quartet/<service>/v1/, got {sorted(bad)}")
    return [Path(*t) for t in sorted(tops)]


def generate(out_root: Path = ROOT, proto_root: Path = PROTO_ROOT) -> list[Path]:
    from grpc_tools import protoc
    import grpc_tools

    protos = sorted(proto_root.rglob("*.proto"))
    for package in generated_packages(proto_root):
        # Each package folder is deleted and regenerated: never one of the hand-written ones.
        if package.parts[1] in ("services", "kernels"):
            raise SystemExit(f"proto package {package} would overwrite hand-written code")
        shutil.rmtree(out_root / package, ignore_errors=True)
    out_root.mkdir(parents=True, exist_ok=True)
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{proto_root}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *[str(p.relative_to(proto_root)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    # Regular packages (not namespace ones), so setuptools' package discovery ships them in wheels.
    for proto in protos:
        folder = out_root / proto.relative_to(proto_root).parent
        while folder != out_root / "quartet":
            (folder / "__init__.py").touch()
            folder = folder.parent
    return protos


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    made = generate(target)
    print(f"generated {len(made)} protos into {target}/quartet")
