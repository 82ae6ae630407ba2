"""The shape of the code: data flows one way (no import cycle), modules stay small, fit reads on one screen."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "modelupdate"


def test_no_import_cycle_in_the_package():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "import_map.py"), "--check"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_the_import_map_finds_a_cycle_when_there_is_one():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from import_map import find_cycle
    finally:
        sys.path.pop(0)
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "p.x": {"p"}}) is None


def test_no_module_over_550_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 550}
    assert not long, long


def test_fit_reads_on_one_screen():
    tree = ast.parse((PACKAGE / "engine.py").read_text())
    fit = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "fit")
    assert fit.end_lineno - fit.lineno + 1 <= 80


def test_the_cli_layer_holds_no_library_logic():
    """Command modules import the library lazily inside commands or from config; no raise of domain errors."""
    for path in (PACKAGE / "cli").glob("*.py"):
        source = path.read_text()
        assert "raise ConfigError" not in source and "raise OutputError" not in source, path.name


def test_docstrings_and_comments_name_only_documents_in_the_repository():
    """The code points to the project's own docs (docs/...md, README.md); a note kept outside the repository is
    no reference for a reader of the code."""
    root = PACKAGE.parent.parent
    documents = [p.relative_to(root).as_posix() for p in root.rglob("*.md") if not {".git", ".venv"} & set(p.parts)]
    missing = {}
    for path in PACKAGE.rglob("*.py"):
        named = set(re.findall(r"[\w./-]*\w\.md\b", path.read_text()))
        gone = sorted(n for n in named if not any(d == n or d.endswith("/" + n) for d in documents))
        if gone:
            missing[str(path.relative_to(root))] = gone
    assert not missing, missing


def test_renderers_import_nothing_from_the_workflows():
    """Reports draw the analysis's result types (analysis.py); the workflows call them, never the reverse."""
    for path in (PACKAGE / "report").glob("*.py"):
        imported = [node.module or "" for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.ImportFrom)]
        assert not [m for m in imported if "workflows" in m], path.name


def _layers() -> list[set[str]]:
    """The rows of docs/architecture.md's layer picture, top first: each the modules (and packages) it names."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("## Layers", 1)[1].split("```", 2)[1]
    rows = []
    for line in block.strip().splitlines():
        names = []
        for token in line.split():
            if not re.fullmatch(r"[a-z_]+(\.py|/)", token):
                break
            names.append(token.removesuffix(".py").removesuffix("/"))
        rows.append(set(names))
    return rows


def test_every_import_points_down_the_layer_picture():
    """A module imports only from its own row or the rows under it (docs/architecture.md, "Layers")."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from import_map import import_map

    rows = _layers()
    row_of = {name: i for i, row in enumerate(rows) for name in row}

    def row(module: str) -> int | None:
        parts = module.split(".")[1:]
        return row_of.get(parts[0]) if parts else None

    placed = {m for m in import_map() if row(m) is not None}
    unplaced = {m.split(".")[1] for m in import_map() if m.count(".") and row(m) is None} - {"__main__"}
    assert not unplaced, f"modules missing from the layer picture: {sorted(unplaced)}"
    upward = [f"{m} -> {t}" for m in sorted(placed) for t in sorted(import_map()[m])
              if (target := row(t)) is not None and target < row_of[m.split(".")[1]]]
    assert not upward, upward
    assert len(rows) >= 8 and {"cli", "workflows", "engine", "errors"} <= set(row_of)


def test_no_function_takes_more_than_15_parameters():
    """A function with more parameters wants a config object (the training options come in one group per part
    of the configs)."""
    wide = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                a = node.args
                count = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + bool(a.vararg) + bool(a.kwarg)
                if count > 15:
                    wide[f"{path.relative_to(PACKAGE)}::{node.name}"] = count
    assert not wide, wide


def test_every_type_ignore_says_why():
    bare = [f"{path.relative_to(PACKAGE)}:{i}" for path in PACKAGE.rglob("*.py")
            for i, line in enumerate(path.read_text().splitlines(), 1)
            if "type: ignore" in line and not re.search(r"type: ignore(\[[^\]]*\])?\s+#\s*\S", line)]
    assert not bare, bare


def test_no_code_comment_names_a_file_that_is_not_in_the_repository():
    """A comment's pointer to a module, doc or script must lead somewhere (an example of a user's own file,
    as in __main__.py's note on shadowing, is named here)."""
    import io
    import tokenize

    root = PACKAGE.parent.parent
    files = [p for p in root.rglob("*") if not {".git", ".venv"} & set(p.parts) and p.is_file()]
    names, paths = {p.name for p in files}, [p.as_posix() for p in files]
    examples = {"numpy.py"}
    missing = []
    for path in PACKAGE.rglob("*.py"):
        for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if token.type != tokenize.COMMENT:
                continue
            for named in re.findall(r"[\w./-]*\w\.(?:py|md|toml|sh|json|txt)\b", token.string):
                found = any(p.endswith(named) for p in paths) if "/" in named else named in names
                if not found and named not in examples:
                    missing.append(f"{path.relative_to(root)}: {named}")
    assert not missing, missing
