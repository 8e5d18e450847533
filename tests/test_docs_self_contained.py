"""The repository stands alone: no tracked file cites material outside it; stale facts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Names of the research notes the project was written from (not part of the repository).
# Built from pieces so that this file does not match itself.
FOREIGN = [
    "official-code" + "-notes",
    "performance" + "-notes",
    "ecosystem" + "-notes",
    "x-reid" + "-paper",
    "DESIGN" + ".md",
    "../" + "shared",
    "shared" + "/reference",
    "reference" + "/datasets",
]
EXEMPT = {"CHANGELOG.md"}  # history may name what earlier releases cited


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout")
    return [ROOT / p for p in out.decode().split("\0") if p and p not in EXEMPT]


def test_no_tracked_file_cites_files_outside_the_repository():
    pattern = re.compile("|".join(re.escape(n) for n in FOREIGN), re.IGNORECASE)
    offenders = []
    for path in tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "references to files outside the repository:\n" + "\n".join(offenders)


def test_docs_links_to_local_pages_exist():
    for page in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name} links to missing {target}"


def test_factory_docstring_describes_the_tiny_backbone():
    from xreid.backbones import build_backbone

    m = re.search(r"D=(\d+), (\d+) blocks, (\d+) heads, patch (\d+), d=(\d+)",
                  build_backbone.__doc__ or "")
    assert m, "build_backbone's docstring no longer describes the tiny backbone"
    tiny = build_backbone("tiny")
    described = tuple(int(v) for v in m.groups())
    actual = (tiny.embed_dim, len(tiny.blocks), tiny.blocks[0].attn.num_heads,
              tiny.patch_size[0], tiny.proj_dim)
    assert described == actual
