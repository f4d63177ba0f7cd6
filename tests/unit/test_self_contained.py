"""The repository stands alone: no tracked file refers to a path outside it.

A user who clones the repo gets nothing beside it, but CI and developers may have other folders next to the clone,
so a test run alone cannot notice a dependency on one. This test reads every tracked text file and fails on:
- a relative path (`../x`) that climbs above the repository root from the file's folder or from the root;
- a path built in code from the root's parent (`REPO_ROOT.parent / ...`);
- a Markdown document named anywhere (`something.md`) that exists neither at that path nor by that name in the repo.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CLIMB = re.compile(r"(?<![\w.])((?:\.\./)+[\w.-]*)")
ROOT_PARENT = re.compile(r"\b\w*ROOT\w*\.parent\b(?!s)")
MARKDOWN = re.compile(r"(?<![\w/.-])([\w./-]*[\w-]\.md)\b")
SKIPPED_SUFFIXES = {".lock", ".json", ".jsonl", ".png", ".jar", ".svg", ".ico"}


def tracked_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, text=True
        ).stdout.split("\0")
        return [REPO / name for name in listed if name]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (e.g. an image): walk the tree
        return [p for p in REPO.rglob("*") if p.is_file() and ".state" not in p.parts and ".git" not in p.parts]


def text_files() -> list[tuple[Path, str]]:
    files = []
    for path in tracked_files():
        # This file's own examples of what the check catches are deliberate.
        if path.suffix in SKIPPED_SUFFIXES or path == Path(__file__).resolve() or not path.is_file():
            continue
        try:
            files.append((path, path.read_text()))
        except UnicodeDecodeError:
            continue
    return files


def outside(base: Path, relative: str) -> bool:
    return not (base / relative).resolve().is_relative_to(REPO)


def problems_in(path: Path, text: str, markdown_names: set[str]) -> list[str]:
    found = []
    where = path.relative_to(REPO)
    for number, line in enumerate(text.splitlines(), 1):
        for match in CLIMB.finditer(line):
            relative = match.group(1)
            if outside(path.parent, relative) and outside(REPO, relative):
                found.append(f"{where}:{number}: {relative!r} leaves the repository")
        if ROOT_PARENT.search(line):
            found.append(f"{where}:{number}: a path built from the repository root's parent")
        for match in MARKDOWN.finditer(line):
            named = match.group(1)
            candidates = (REPO / named, path.parent / named)
            in_repo = any(c.resolve().is_relative_to(REPO) and c.exists() for c in candidates)
            if not in_repo and Path(named).name not in markdown_names:
                found.append(f"{where}:{number}: {named!r} is not in the repository")
    return found


def test_no_tracked_file_refers_outside_the_repository():
    files = text_files()
    assert len(files) > 50, "the tracked files were not found"
    markdown_names = {path.name for path, _ in files if path.suffix == ".md"}
    problems = [problem for path, text in files for problem in problems_in(path, text, markdown_names)]
    assert not problems, "references outside the repository:\n" + "\n".join(problems)


def test_the_check_sees_each_kind_of_outside_reference(tmp_path):
    """The detector itself: each pattern it must catch is caught, and an in-repo path is not."""
    sample = REPO / "docs" / "example.md"
    names = {"README.md", "contract.md"}
    # The examples are assembled, so this file itself names nothing outside the repo.
    outside = "sha" + "red"
    assert problems_in(sample, f"see ../../{outside}/samples", names)
    assert problems_in(sample, f'SAMPLES = REPO_ROOT.parent / "{outside}"', names)
    assert problems_in(sample, "as " + "SPEC" + ".md says", names)
    assert not problems_in(sample, "see ../README.md and contract.md", names)
    assert not problems_in(REPO / "services" / "kafka" / "fetch.sh", 'cd "$(dirname "$0")/../.."', names)
