"""The docs as a map: every relative link of the README and docs/ leads to a file the repository holds."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def links(page: Path) -> list[Path]:
    targets = [m for m in LINK.findall(page.read_text()) if not re.match(r"[a-z]+:", m)]
    return [(page.parent / target).resolve() for target in targets]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_leads_to_a_file_the_repository_keeps(page):
    missing = [str(t.relative_to(REPO)) for t in links(page) if not t.exists()]
    assert not missing, f"{page.name} links to missing {missing}"
    if (REPO / ".git").exists():  # a published page must not be git-ignored (it would never reach a clone)
        files = [str(t.relative_to(REPO)) for t in links(page) if t.is_file()]
        ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", *files], capture_output=True, text=True)
        assert not ignored.stdout.strip(), f"{page.name} links to git-ignored {ignored.stdout.split()}"


def test_the_readmes_layout_names_every_module_config_and_profile():
    """The README's Layout is the map a newcomer reads the architecture from: nothing the tree holds is left off."""
    layout = (REPO / "README.md").read_text().split("## Layout", 1)[1]
    names = [p.name for p in (REPO / "src" / "oodpose").glob("*.py") if not p.name.startswith("__")]
    names += [p.name for p in (REPO / "config").glob("*.yaml") if p.name != "schema.yaml"]
    names += [p.name for p in (REPO / "profiles").iterdir()] + [p.name for p in (REPO / "envs").glob("*.py")]
    assert not [name for name in names if not re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", layout)]
