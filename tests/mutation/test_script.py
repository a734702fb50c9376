"""scripts/mutation's refusal to reuse a test map after a mutated module changed (mutmut 3.8
would keep the changed module's map only, and every other module's mutants would survive
spuriously). Runs the script itself in a scratch copy; the refusal comes before mutmut."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_kept_map_is_refused_once_a_mutated_module_changed(tmp_path):
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    sources = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]
    lines = []
    for source in sources:
        path = tmp_path / source
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {source}\n")
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {source}\n")
    (tmp_path / "mutants").mkdir()
    (tmp_path / "mutants" / "map-sources.sha256").write_text("".join(lines))
    (tmp_path / "curation" / "images.py").write_text("# changed\n")
    venv = Path(sys.executable).parents[1]
    env = {**os.environ, "MUTATION_KEEP_MAP": "1", "CURATE_VENV": str(venv)}
    result = subprocess.run(["bash", "scripts/mutation", "curation.split"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == ("scripts/mutation: MUTATION_KEEP_MAP=1 refused: curation/images.py "
                             "changed since the test map was recorded; run without it to record "
                             "the map afresh\n")
