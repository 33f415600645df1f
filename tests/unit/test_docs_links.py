"""Every relative link in README.md and docs/*.md leads somewhere: the file exists and, for
``#anchor`` links, the target Markdown file has a heading with that GitHub slug."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")
# [text](target) or ![alt](target); the target stops at whitespace or ')' (an optional "title" follows).
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def markdown_files() -> list[Path]:
    return [REPOSITORY / "README.md", *sorted((REPOSITORY / "docs").glob("*.md"))]


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, markup and punctuation dropped, spaces → '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)  # \w keeps letters and digits of any script, and '_'
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's slug in a Markdown file, with GitHub's -1, -2… for repeated headings."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(path: Path):
    """(line number, target) of every relative link in a Markdown file (code spans and blocks left out)."""
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:…
                continue
            yield number, target


def broken_links(path: Path) -> list[str]:
    problems = []
    for number, target in links(path):
        file_part, _, anchor = target.partition("#")
        where = (path.parent / unquote(file_part)).resolve() if file_part else path
        label = f"{path.relative_to(REPOSITORY)}:{number}: {target}"
        if not where.exists():
            problems.append(f"{label}: no file {where}")
        elif anchor and where.suffix == ".md" and unquote(anchor).lower() not in anchors(where):
            problems.append(f"{label}: no heading with anchor #{anchor} in {where.name}")
    return problems


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPOSITORY)))
def test_relative_links_resolve(path):
    assert broken_links(path) == []


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(REPOSITORY / target.partition("#")[0]).resolve() for _, target in links(REPOSITORY / "README.md")}
    missing = [p.name for p in sorted((REPOSITORY / "docs").glob("*.md")) if p.resolve() not in linked]
    assert missing == []


@pytest.mark.parametrize(("heading", "slug"), [
    ("Results on data without a shortcut, and transfer", "results-on-data-without-a-shortcut-and-transfer"),
    ("`images.parquet` — one row per input image", "imagesparquet--one-row-per-input-image"),
    ("`facecluster ask` on a folder nobody labelled", "facecluster-ask-on-a-folder-nobody-labelled"),
    ("eyes: eye physiology", "eyes-eye-physiology"),
    ("Sweep: which features and clusterers separate the classes?",
     "sweep-which-features-and-clusterers-separate-the-classes"),
    ("[The report](#x) and `results.json`'s `audit`", "the-report-and-resultsjsons-audit"),
])
def test_github_slug(heading, slug):
    assert github_slug(heading) == slug


def test_a_broken_link_and_a_missing_anchor_are_found(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.REPOSITORY", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# Page\n\n## A section\n\n## A section\n", encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n[ok](docs/page.md#a-section) [again](docs/page.md#a-section-1) [self](#title)\n"
        "[gone](docs/missing.md) [bad anchor](docs/page.md#no-such) [web](https://example.org/x)\n"
        "`[not a link](nowhere.md)`\n\n```\n[in code](nowhere.md)\n```\n", encoding="utf-8")
    problems = broken_links(readme)
    assert len(problems) == 2
    assert "docs/missing.md: no file" in problems[0]
    assert "#no-such" in problems[1]


def readme_command(section: str) -> str:
    """The one command in the README section ``## <section>`` (its first bash block)."""
    text = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return body.split("```bash\n", 1)[1].split("\n```", 1)[0].strip()


def ci_commands() -> str:
    """.ci/run's commands, with pip's and pytest's -q (quiet output, the same commands) left out."""
    return re.sub(r" -q\b", "", (REPOSITORY / ".ci" / "run").read_text(encoding="utf-8"))


def test_ci_runs_the_readme_test_command():
    assert readme_command("Test") in ci_commands().splitlines()


def test_ci_installs_as_the_readme_says():
    # The install part of "Install and run"; the dev-set run itself is an integration test.
    steps = [step.strip() for step in readme_command("Install and run").split("&&")]
    assert steps[0] == "python3 -m venv .venv"
    ci = ci_commands().splitlines()
    assert steps[0] in ci and steps[1] in ci
