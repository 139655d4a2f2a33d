"""Print the import map of mtmh/ and serve_app/ as a Mermaid graph (GitHub renders it).

One node per package folder (mtmh.model, mtmh.retrieval, ...) or top-level module, one arrow
per "imports from", read from the code's own import statements (imports inside functions
included: they are the lazy Ray and FAISS imports that keep the maths importable without
them). Run from the repository root:

    .venv/bin/python docs/import_map.py > /tmp/imports.mmd
    .venv/bin/python docs/import_map.py --modules mtmh/model   # one folder, file by file
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOTS = ("mtmh", "serve_app")


def node_of(module: str, modules: str | None) -> str | None:
    """The node a dotted module belongs to: its package folder, or (inside `modules`) itself."""
    parts = module.split(".")
    if parts[0] not in ROOTS:
        return None
    if modules and module.startswith(modules.replace("/", ".")):
        return module
    return ".".join(parts[:2]) if len(parts) > 2 else module


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", help="a folder to show file by file, e.g. mtmh/model")
    args = parser.parse_args()
    edges: set[tuple[str, str]] = set()
    for root in ROOTS:
        for path in sorted(Path(root).rglob("*.py")):
            module = ".".join(path.with_suffix("").parts).removesuffix(".__init__")
            source = node_of(module, args.modules)
            for target in map(lambda m: node_of(m, args.modules), imports(path)):
                if source and target and target != source:
                    edges.add((source, target))
    print("graph LR")
    for source, target in sorted(edges):
        print(f"  {source.replace('.', '_')}[{source}] --> {target.replace('.', '_')}[{target}]")


if __name__ == "__main__":
    main()
