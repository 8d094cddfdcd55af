"""Build the Python code for protos/ into build/proto (never committed).

Run as ``python -m services.common.protogen [OUT_DIR]``. The output keeps the
package path, so ``from quartet.engine.v1 import engine_pb2`` resolves once
OUT_DIR is on sys.path (``make`` adds it to the venv through a .pth file).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def generate(out_dir: Path, proto_root: Path = ROOT / "protos") -> list[Path]:
    from grpc_tools import protoc
    import grpc_tools

    protos = sorted(proto_root.rglob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {proto_root}")
    out_dir.mkdir(parents=True, exist_ok=True)
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{proto_root}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(proto_root)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    return protos


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "proto"
    made = generate(target)
    print(f"generated {len(made)} protos into {target}")
