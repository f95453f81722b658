"""What the published package says about itself: license, authors, URLs, classifiers, and the
dependency bounds that tests_lowest tests (the wheel's METADATA is built from these)."""

from __future__ import annotations

import tomllib

from tests.helpers import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_apache_license_ships_with_the_package() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "Copyright 2026 The aqueue authors" in text
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    sdist = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    assert "LICENSE" in sdist["targets"]["sdist"]["include"]


def test_authors_urls_and_classifiers() -> None:
    assert PROJECT["authors"] == [{"name": "The aqueue authors"}]
    assert set(PROJECT["urls"]) == {"Homepage", "Documentation", "Source", "Issues"}
    classifiers = set(PROJECT["classifiers"])
    for minor in (11, 12, 13, 14):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert "License :: OSI Approved :: Apache Software License" in classifiers
    assert "Development Status :: 3 - Alpha" in classifiers
    assert any(c.startswith("Operating System ::") for c in classifiers)
    assert any(c.startswith("Intended Audience ::") for c in classifiers)


def test_protobuf_floor_is_the_librarys_own_and_the_test_extra_pins_the_generated_codes() -> None:
    protobuf = [d for d in PROJECT["dependencies"] if d.startswith("protobuf")]
    assert protobuf == ["protobuf>=3.8,<8"]  # what aqueue needs, tested by tests_lowest
    test_extra = PROJECT["optional-dependencies"]["test"]
    assert "protobuf>=7.35.1,<8" in test_extra  # what the committed *_pb2.py check at import
