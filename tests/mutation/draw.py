"""The fair draws of 2026-12-05 (issue 24): per sampled module, 15 mutant names drawn by
``random.Random(1205).sample(names, 15)``, names being the module's mutant names sorted by
function and number, less the names an earlier report names as run. Drawn before the run, on
the tests as they were; the draw's survivors stay in the report as they are.

    .venv/bin/python tests/mutation/draw.py validate   # prints the 15 names, one a line
    MUTATION_CHILDREN=1 MUTATION_KEEP_MAP=1 scripts/mutation $(... draw.py validate)

Needs mutants/ (any ``scripts/mutation`` run generates every module's mutants first).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEED = 1205
SIZE = 15
# For images only the fetch safeguards are sampled, as on 2026-11-25 and 2026-12-04.
IMAGES_SAFEGUARDS = ("x__download", "x__http_get", "x_process_image", "x_fetch_one",
                     "x__image_format", "xǁFetchSettingsǁcheck")
# The names the report of 2026-12-04 names as run (its survivors and its notes); the mutants
# killed in the earlier draws are not recorded by name, so a draw may repeat one of those.
RUN_BEFORE = {
    "validate": ["x__expectations__mutmut_23", "x__expectations__mutmut_56",
                 "x__failures__mutmut_14", "x__save__mutmut_18",
                 "x_validate_slice__mutmut_6", "x_validate_slice__mutmut_117",
                 "xǁ_Projectǁ__init____mutmut_8", "xǁ_Projectǁ__init____mutmut_17",
                 "xǁ_Projectǁrun__mutmut_6"],
    "slices": ["x_build_slice__mutmut_22", "x_build_slice__mutmut_77",
               "x_build_slice__mutmut_133", "x_build_slice__mutmut_173"],
    "images": ["x__http_get__mutmut_16", "x__http_get__mutmut_25", "x__http_get__mutmut_41",
               "x_process_image__mutmut_65", "xǁFetchSettingsǁcheck__mutmut_4"],
}


def by_function_and_number(name: str) -> tuple[str, int]:
    function, number = name.rsplit("__mutmut_", 1)
    return function, int(number)


def draw(module: str) -> list[str]:
    meta = ROOT / "mutants" / "curation" / f"{module}.py.meta"
    names = json.loads(meta.read_text())["exit_code_by_key"]
    before = {f"curation.{module}.{short}" for short in RUN_BEFORE[module]}
    pool = [n for n in names if n not in before]
    if module == "images":
        pool = [n for n in pool if n.rsplit("__mutmut_", 1)[0].split(".")[-1] in IMAGES_SAFEGUARDS]
    return random.Random(SEED).sample(sorted(pool, key=by_function_and_number), SIZE)


if __name__ == "__main__":
    for module in sys.argv[1:]:
        print("\n".join(draw(module)))
