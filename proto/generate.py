"""Regenerate the committed *_pb2.py / *_pb2.pyi files from proto/*.proto.

Run through ``nox -s protos``; the tests regenerate into a temporary folder and fail when the
committed files drift. Needs grpcio-tools and mypy-protobuf at the versions pinned in
pyproject.toml (the ``test`` extra)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.rglob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Write generated modules under ``out_dir`` (mirroring proto/); return their paths."""
    from grpc_tools import protoc

    files = [str(p.relative_to(PROTO_DIR)) for p in proto_files()]
    plugin = Path(sys.executable).parent / "protoc-gen-mypy"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"--plugin=protoc-gen-mypy={plugin}",
        f"--python_out={out_dir}",
        f"--mypy_out={out_dir}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    return sorted(p for p in out_dir.rglob("*_pb2.py*") if p.suffix in (".py", ".pyi"))


if __name__ == "__main__":
    written = generate(ROOT)
    print("\n".join(str(p.relative_to(ROOT)) for p in written))
    sys.exit(0)
