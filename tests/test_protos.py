"""The committed generated protobuf modules are exactly what proto/generate.py produces."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.helpers import ROOT


def test_generated_code_matches_the_protos(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "proto" / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)

    fresh = generate.generate(tmp_path)
    assert fresh, "nothing was generated"
    for path in fresh:
        relative = path.relative_to(tmp_path)
        committed = ROOT / relative
        assert committed.exists(), f"{relative} is generated but not committed: run nox -s protos"
        assert committed.read_bytes() == path.read_bytes(), (
            f"{relative} differs from its .proto: run nox -s protos and commit"
        )
    committed_all = {
        p.relative_to(ROOT)
        for p in ROOT.glob("*/**/*_pb2.py*")
        if ".nox" not in p.parts and ".venv" not in p.parts
    }
    assert committed_all == {p.relative_to(tmp_path) for p in fresh}
