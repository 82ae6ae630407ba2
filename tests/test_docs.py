"""The docs cannot drift: docs/cli.md covers every command and option and equals a fresh rendering
of scripts/gen_cli_docs.py; every relative link in README.md and docs/*.md resolves."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import typer

from modelupdate.cli import app

ROOT = Path(__file__).resolve().parent.parent
CLI_MD = ROOT / "docs" / "cli.md"
REGENERATE = "run `python scripts/gen_cli_docs.py` and commit docs/cli.md"
MARKDOWN_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def click_tree() -> tuple[object, dict[str, object]]:
    """The root group and its visible commands, read from click (not from the generator)."""
    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="modelupdate")
    commands = {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}
    return group, {name: cmd for name, cmd in commands.items() if not getattr(cmd, "hidden", False)}


def option_names(command) -> list[str]:
    return [name for p in command.params if p.param_type_name == "option" and not getattr(p, "hidden", False)
            for name in (*p.opts, *p.secondary_opts)]


def sections(markdown: str) -> dict[str, str]:
    """Level-2 sections of a Markdown file by heading text (fenced code has no headings here)."""
    parts = re.split(r"^## (.+)$", markdown, flags=re.MULTILINE)
    return {heading.strip(): body for heading, body in zip(parts[1::2], parts[2::2], strict=True)}


# --------------------------------------------------------------------------- docs/cli.md


def test_every_command_and_option_is_in_cli_md():
    group, commands = click_tree()
    assert {"train", "ensemble-train", "ldi-train", "predict", "flip-report", "compare", "info",
            "models"} <= set(commands)
    docs = sections(CLI_MD.read_text(encoding="utf-8"))
    missing = [f"global option {name}" for name in option_names(group) if f"`{name}`" not in docs["Global options"]]
    for name, command in commands.items():
        section = docs.get(f"`modelupdate {name}`")
        if section is None:
            missing.append(f"command {name}")
            continue
        missing += [f"{name} {opt}" for opt in option_names(command) if f"`{opt}`" not in section]
        missing += [f"{name} argument {p.metavar or p.name.upper()}" for p in command.params
                    if p.param_type_name == "argument" and (p.metavar or p.name.upper()) not in section]
    documented = {h.removeprefix("`modelupdate ").removesuffix("`") for h in docs if h.startswith("`modelupdate ")}
    stale = sorted(documented - set(commands))
    assert not missing and not stale, (f"docs/cli.md lacks {missing}; documents removed commands {stale}: "
                                       f"{REGENERATE}")


def test_cli_md_is_what_the_generator_writes_now():
    expected = load_generator().render()
    assert CLI_MD.read_text(encoding="utf-8") == expected, f"docs/cli.md is out of date: {REGENERATE}"


def test_generator_is_deterministic_and_covers_the_sample_options():
    generator = load_generator()
    text = generator.render()
    assert text == generator.render()
    # a few rows checked by hand (names, type, default): a short alias, an on/off pair, a required option
    assert "| `--members`, `-m` | INTEGER | — | Number of members" in text and "[default: 4]" in text
    assert "| `--exclude-target` / `--all-classes` | flag | — | " in text
    assert "| `--out` | PATH | required | " in text
    assert "| `--debug` | flag | off | " in text
    assert "(1-a)\\*CE + a\\*loss" in text  # emphasis markers escaped outside code spans
    assert "| 130 |" in text and "| 3 |" in text  # the exit-code summary


# --------------------------------------------------------------------------- links

INLINE_LINK = re.compile(r"""!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)""")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def strip_code(markdown: str) -> str:
    """Drop fenced blocks and inline code spans: what looks like a link there is not one."""
    markdown = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", markdown, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", markdown)


def links(path: Path) -> list[str]:
    text = strip_code(path.read_text(encoding="utf-8"))
    return INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)


def github_anchors(path: Path) -> set[str]:
    """The ids GitHub gives the headings of a Markdown file (``-1``, ``-2`` on repeats)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", path.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.MULTILINE):
        heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


@pytest.mark.parametrize("path", MARKDOWN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(path):
    broken = []
    for target in links(path):
        if SCHEME.match(target) or target.startswith("#"):
            continue  # a URL, mailto:, or an anchor in the same file (checked below)
        file_part = target.split("#", 1)[0].split("?", 1)[0]
        if not (path.parent / file_part).exists():
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)} links to missing files: {broken}"


@pytest.mark.parametrize("path", MARKDOWN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_anchors_name_a_heading(path):
    broken = []
    for target in links(path):
        if SCHEME.match(target) or "#" not in target:
            continue
        file_part, anchor = target.split("#", 1)
        linked = (path.parent / file_part) if file_part else path
        if linked.suffix == ".md" and linked.is_file() and anchor not in github_anchors(linked):
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)} links to headings that do not exist: {broken}"


def test_link_checker_sees_links_and_skips_code(tmp_path):
    (tmp_path / "there.md").write_text("# Title\n\n## A `code` heading (v1)\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md#a-code-heading-v1) [gone](missing.md) ![img](pic.png 'x')\n"
                    "`[not](a-link.md)`\n```\n[nor](this.md)\n```\n[ref]: ref.md\n[web](https://example.com)\n")
    assert links(page) == ["there.md#a-code-heading-v1", "missing.md", "pic.png", "https://example.com",
                           "ref.md"]
    assert github_anchors(tmp_path / "there.md") == {"title", "a-code-heading-v1"}


def test_the_documented_pages_exist_and_readme_links_them():
    pages = ["index", "quickstart", "cli", "method", "ci-gate", "results", "performance", "reliability", "gpu",
             "architecture"]
    readme = (ROOT / "README.md").read_text()
    for page in pages:
        assert (ROOT / "docs" / f"{page}.md").is_file(), page
        assert f"docs/{page}.md" in readme, f"README does not link docs/{page}.md"
