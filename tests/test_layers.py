"""The dependency direction of docs/INTERNALS.md, checked on the source.

``commands -> server / client / store -> protocol -> crypto``: the crypto
helpers and the sans-I/O protocol core import no sockets, threads, asyncio,
click or store, and nothing above them. A violation names the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import schat

ROOT = Path(schat.__file__).parent

# package -> the schat packages and standard modules it must never import
FORBIDDEN = {
    "crypto": {"schat.protocol", "schat.server", "schat.client", "schat.store",
               "schat.commands", "schat.chat", "asyncio", "socket", "threading", "click"},
    "protocol": {"schat.server", "schat.client", "schat.store", "schat.commands",
                 "schat.chat", "asyncio", "socket", "threading", "click"},
}


def imports_of(path: Path):
    """(line, module) for every import statement in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def _matches(module: str, banned: str) -> bool:
    return module == banned or module.startswith(banned + ".")


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_import_nothing_above_them(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imports_of(path):
            if any(_matches(module, banned) for banned in FORBIDDEN[package]):
                bad.append(f"{path.relative_to(ROOT.parent)}:{line}: imports {module}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text("import asyncio\nfrom schat.store.files import atomic_write\n")
    found = [m for _, m in imports_of(sample)]
    assert found == ["asyncio", "schat.store.files"]
    assert _matches("schat.store.files", "schat.store")
    assert not _matches("schat.storefront", "schat.store")
