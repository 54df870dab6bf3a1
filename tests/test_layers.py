"""Layers point one way (STYLE.md): a module imports only from its own layer or the ones below."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parent.parent / "src" / "protege"

# Lower number = lower layer. A top-level module or subpackage not listed here fails the test.
LAYERS = {
    "records": 0, "openai_format": 0, "pricing": 0, "data": 0,
    "store": 1, "config": 2,
    "models": 3,
    "curate": 4, "cluster": 4, "train": 4, "evaluate": 4,
    "route": 5, "flywheel": 6, "report": 6,
    "gateway": 7, "client": 7, "demo": 8, "cli": 9, "__main__": 10, "__init__": 10,
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
