"""mypy over the host package, clean (its configuration is pyproject's [tool.mypy]).

The folders are not named like the import package (pyproject's package-dir:
`ptc` is runtime/, `ptc.hostcalls` is hostcalls/, ...), and the editable
install maps them with an import hook, which mypy does not run. So the check
runs on a tree of symlinks laid out by import name (.mypy_cache/tree/ptc, made
anew from package-dir on every run), and mypy's paths are mapped back to the
real files. guest/app runs inside the sandbox and is excluded in [tool.mypy].

By hand: `python tests/test_types.py [mypy options]`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".mypy_cache"  # git-ignored; mypy's own cache sits beside the tree
TREE = CACHE / "tree"


def _package_dirs() -> dict[str, str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["setuptools"]["package-dir"]


def _lay_tree() -> dict[str, str]:
    """The symlink tree by import name; returns each tree prefix and the folder it stands for, longest first."""
    mapping = _package_dirs()
    shutil.rmtree(TREE, ignore_errors=True)
    prefixes: dict[str, str] = {}
    for package, folder in sorted(mapping.items()):
        target = TREE.joinpath(*package.split("."))
        source = ROOT / folder
        if "." not in package:  # the top package: a real folder holding links to the top folder's entries
            target.mkdir(parents=True)
            for entry in source.iterdir():
                if entry.name != "__pycache__":
                    (target / entry.name).symlink_to(entry)
        else:
            target.symlink_to(source, target_is_directory=True)
        prefixes[package.replace(".", "/") + "/"] = folder + "/"
    return dict(sorted(prefixes.items(), key=lambda item: -len(item[0])))


def _real_paths(output: str, prefixes: dict[str, str]) -> str:
    lines = []
    for line in output.splitlines():
        for prefix, folder in prefixes.items():
            if line.startswith(prefix):
                line = folder + line[len(prefix) :]
                break
        lines.append(line)
    return "".join(line + "\n" for line in lines)


def mypy(*options: str) -> subprocess.CompletedProcess[str]:
    """Run mypy over the `ptc` package; its output names the real files."""
    prefixes = _lay_tree()
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
    command += ["--cache-dir", str(CACHE), *options, "-p", "ptc"]
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    done = subprocess.run(command, cwd=TREE, capture_output=True, text=True, env=env, timeout=600)
    done.stdout = _real_paths(done.stdout, prefixes)
    return done


@pytest.mark.slow
def test_mypy_is_clean() -> None:
    pytest.importorskip("mypy", reason="mypy is in the dev extra: pip install -e '.[dev]'")
    done = mypy()
    assert done.returncode == 0 and "Success" in done.stdout, f"mypy:\n{done.stdout}\n{done.stderr}"


if __name__ == "__main__":
    done = mypy(*sys.argv[1:])
    print(done.stdout, done.stderr, sep="", end="")
    sys.exit(done.returncode)
