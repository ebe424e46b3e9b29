"""Imports flow one way: protocol -> model -> host -> targets -> fuzz/trace -> report -> cli."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "nvmefuzz"

#: package -> nvmefuzz packages it may import (errors is everyone's)
ALLOWED = {
    "protocol": {"protocol"},
    "model": {"protocol", "model"},
    "host": {"protocol", "host"},
    "targets": {"protocol", "model", "host", "targets"},
    "trace": {"trace"},
    "fuzz": {"protocol", "model", "host", "targets", "trace", "fuzz"},
    "report": {"protocol", "fuzz", "trace", "report"},
}
#: the pure core may not touch the outside world
FORBIDDEN_IN_CORE = {"os", "socket", "subprocess", "time", "random", "threading", "asyncio"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_lower_layers(package):
    """No module imports a package above its own layer."""
    for path in (PKG / package).rglob("*.py"):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "nvmefuzz" and len(parts) > 1 and parts[1] not in ("errors",):
                assert parts[1] in ALLOWED[package], f"{path.name} imports {name}"


@pytest.mark.parametrize("package", ["protocol", "model", "host"])
def test_pure_core_does_no_io(package):
    """protocol, model and host import no clock, randomness, sockets, files or threads."""
    for path in (PKG / package).rglob("*.py"):
        for name in _imports(path):
            assert name.split(".")[0] not in FORBIDDEN_IN_CORE, f"{path.name} imports {name}"
