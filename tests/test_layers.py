"""Layers point one way (STYLE.md): a module imports only from its own layer or the ones below."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parent.parent / "src" / "protege"

# Lower number = lower layer. A top-level module or subpackage not listed here fails the test.
LAYERS = {
    "records": 0, "openai_format": 0, "pricing": 0, "data": 0,
    "store": 1, "config": 2,
    "models": 3, "specialist": 4,
    "curate": 5, "cluster": 5, "evaluate": 5, "train": 6,
    "route": 7, "flywheel": 8, "report": 8, "retention": 8,
    "gateway": 9, "client": 9, "demo": 10, "cli": 11, "__main__": 12, "__init__": 12,
}


def _layer_of(module: str) -> str:
    return module.split(".")[1] if module.startswith("protege.") else module


def test_imports_point_down():
    wrong = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        unit = rel.parts[0].removesuffix(".py")
        assert unit in LAYERS, f"{rel}: add {unit!r} to LAYERS in this test"
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("protege."):
                    target = _layer_of(name)
                    if target in LAYERS and LAYERS[target] > LAYERS[unit]:
                        wrong.append(f"{rel} imports {name}")
    assert not wrong, "imports pointing up a layer:\n" + "\n".join(wrong)
