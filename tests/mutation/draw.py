"""The fair draws of issue 24: per sampled module, 15 mutant names drawn by
``random.Random(seed).sample(names, 15)``, names being the module's mutant names sorted by
function and number, less the names an earlier report names as run and those of the earlier
draws. Drawn before the run, on the tests as they were; the draw's survivors stay in the report
as they are.

    .venv/bin/python tests/mutation/draw.py validate            # the draw of seed 1205
    .venv/bin/python tests/mutation/draw.py --seed 1206 images address   # the second draw
    .venv/bin/python tests/mutation/draw.py --seed 1207 images address   # the third draw
    MUTATION_CHILDREN=1 MUTATION_KEEP_MAP=1 scripts/mutation $(... draw.py validate)

Seeds: 1205 drew validate, slices and images (the fetch safeguards) on 2026-12-05; 1206 drew
images' fetch safeguards again (after the tests written for 1205's survivors) and, as module
``address``, images' private-address refusal (``address_refusal``, ``_resolve``,
``_guarded_socket``), which no draw had sampled; 1207 drew both again, after the tests written
for 1206's survivors (tests/curation/test_mutants_images.py). 1208 drew ingest, clean, split
and ``compute`` (weighting/compute.py) on 2026-12-06, on their code of that day: all four had
changed since their last runs (2026-11-25), so their mutants' names no longer match those
runs' and the pool is every mutant. 1209 drew the same four again, after the test written for
1208's one real survivor (a pandas frame refused by ``as_polars``; test_mutants_compute.py).
1210 drew ingest, clean and split again, after the tests written for 1209's real survivors
(a skipped file's counts, an unreadable stream's quarantine row, build_split's result path,
the split opening the catalog read-only); compute was run whole instead. 1211 drew ingest,
clean and split again on 2026-12-06 (third session), after the tests written for 1210's real
survivors; ingest had changed since (its line check is now ``unusable_lines``, and
``_FileIngest.__init__`` and ``_block`` lost a line each), so for ingest the earlier draws left
out of the pool are recomputed on the new code and, in those three functions, name other
mutants than the ones that ran; split had changed too (the shares' length check).
1212 drew slices, validate, compute and framing (the functions its run of 2026-12-06 did not
reach) on 2026-12-06; 1213, 1214 and 1215 drew slices again, each after the tests written for
the one before. 1216 drew images' fetch safeguards, the address refusal, validate, split,
framing, clean and compute again on 2026-12-07 (fifth session), after the tests for every
earlier draw's real survivors (compute's ``_check_transforms`` had changed since 1212: the
earlier draws left out of its pool are recomputed on the new code). A whole run of clean and
compute was begun first and stopped: 22 mutants killed in 17 minutes, about 46 s each, so the
two would have taken about six hours here. 1217 drew images' fetch safeguards and the address
refusal again, after the tests for 1216's six real survivors there; 1218 drew both again,
after the tests for 1217's four. 1219 drew split and the address refusal again, after the
tests for the real survivors of their last draws (1216's three in split, 1218's five).
1220 drew split again on 2026-12-07 (sixth session), a whole draw after the tests for
1216's survivors and 1219's one (1219's split was stopped after 9 of 15). 1221 drew clean
and compute again the same day, after the tests for 1216's one real survivor in each.
1222 drew ingest, slices, validate, images' fetch safeguards, the address refusal and compute
again on 2026-12-07 (seventh session): the modules whose latest draw left no real survivor, so
that no test was written for them since; this draw measures the same tests as that one, and
the two together are a larger fair sample of them.
1223 drew ingest, compute, images' fetch safeguards, the address refusal and validate again
(2026-12-07, eighth session): for the first three, whose draws 1222 and the one before it left
no real survivor, it grows the sample of the same tests again; for the last two it is the
first draw after the tests for 1222's survivors there.
1224 drew the address refusal, validate, slices and clean again the same day, after the
tests for 1223's survivors (validate's byte check) and for 1222's (slices) and 1221's (clean).
Not images' fetch safeguards: fetch_one had just changed (a body that is not an image keeps
its HTTP status), and mutmut numbers a function's mutants anew when it changes, so names drawn
from the mutants of before would not be the mutants run.
1225 drew the address refusal and validate again the same day: the address refusal's third
draw on the same tests (1223 and 1224 left no real survivor), validate's first after the
tests for 1224's three.
1226 drew validate again the same day, after the tests for 1225's two.
1227, 1228 and 1229 were drawn together on 2026-12-07 (ninth session) and run in one run, on
a test map recorded afresh: clean and validate by 1227 and 1228, on the same tests as their
latest draws (1224 and 1226 left no real survivor), so that the pooled samples grow; slices
and ingest by all three, their first draws after the tests for 1224's survivor in slices and
1223's three in ingest. The same run ran again the six real survivors of 1224 and 1225.
1230, 1231 and 1232 drew validate three times the same day, run together after the tests for
1228's survivor there and on validate's code since (``_expectations`` and ``_Project.run`` lost
dead code, so their mutants are numbered anew: drawn from mutants/ regenerated on that code).
1233, 1234 and 1235 were drawn together on 2026-12-07 (tenth session) and run in one run, on
a test map recorded afresh: validate and split by all three, slices and framing by the first
two; each module's first draws after the tests for its last draw's real survivors (validate's
1231, split's 1220, slices' 1228 and 1229, framing's 1216).
1236 drew validate, slices and split again the same day, after the tests for the real
survivors of 1233 to 1235 there (one each in validate and slices, two in split).
1237 drew framing again the same day: its third draw on the same tests (1233 and 1234 left no
real survivor), so that the pooled sample grows.
1238, 1239 and 1240 were drawn together on 2026-12-07 (eleventh session) and run in one run,
after a whole run of validate, on its test map (``MUTATION_KEEP_MAP=1``): split by all three,
on the same tests as 1236 (which left no real survivor there), so that its pooled sample
grows; slices by all three, its first draws after the test for 1236's survivor there
(``Slice.open`` refusing capital letters).
1241, 1242 and 1243 drew slices again the same day, run together after the test for the one
real survivor of 1238 to 1240 there (an Exclusion of an unknown kind losing its message).
1244, 1245 and 1246 were drawn together on 2026-12-07 (twelfth session) and run in one run:
slices by all three, after the tests for the three real survivors of 1241 to 1243 there (a
damaged silver page named by build-slice, a slice's exclusions read back from its manifest);
ingest by all three, its first draws since 1227 to 1229 and the tests for their survivors.
1247, 1248 and 1249 drew slices and ingest again the same day, run together after the tests for
the three real survivors of 1244 to 1246 (a killed export's staging folder; the bytes read
handed to ingest's progress callback; a line whose only high byte is 0x80).
1250, 1251 and 1252 drew slices again the same day, run together after the test for the one
real survivor of 1247 to 1249 there (``slice_name(excluded=True)`` naming no exclusion).
1253, 1254 and 1255 drew slices again the same day, run together after the test for the one
real survivor of 1250 to 1252 there (fetched images left out of an export).
1256, 1257 and 1258 drew slices again on 2026-12-08, run together after the tests for the
four real survivors of 1253 to 1255 there (a bad slice name's message; the manifest's inputs;
weights that leave out an item, refused with a message and not dropped).
1259, 1260 and 1261 drew slices again the same day, run together after the tests for the
three real survivors of 1256 to 1258 there (a name's strata joined by dots; the manifest's
train items per stratum; a build's seconds); 1259 drew typing_sql too, its first draw (its
row was its whole run of 2026-11-25). After 1261 slices was run whole, and then export_hf
gained a line (a link refused), which renumbers its mutants: on the code after it, slices'
earlier draws are recomputed over other names in export_hf than the ones that ran (their names
and results are in the report and docs/mutation-history.md).
1262 drew images' fetch safeguards again on 2026-12-08, their first draw since ``fetch_one``
changed on 2026-12-07 (a fetched body that is not an image keeps its HTTP status).

Needs mutants/ (any ``scripts/mutation`` run generates every module's mutants first).
"""

from __future__ import annotations

import argparse
import functools
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIZE = 15
SEEDS = tuple(range(1205, 1263))  # the draws made, in order
DREW = {1205: ("validate", "slices", "images"), 1206: ("images", "address"),
        1207: ("images", "address"), 1208: ("ingest", "clean", "split", "compute"),
        1209: ("ingest", "clean", "split", "compute"), 1210: ("ingest", "clean", "split"),
        1211: ("ingest", "clean", "split"),
        1212: ("slices", "validate", "compute", "framing"), 1213: ("slices",),
        1214: ("slices",), 1215: ("slices",),
        1216: ("images", "address", "validate", "split", "framing", "clean", "compute"),
        1217: ("images", "address"), 1218: ("images", "address"),
        1219: ("split", "address"), 1220: ("split",), 1221: ("clean", "compute"),
        1222: ("ingest", "slices", "validate", "images", "address", "compute"),
        1223: ("ingest", "compute", "images", "address", "validate"),
        1224: ("address", "validate", "slices", "clean"),
        1225: ("address", "validate"),
        1226: ("validate",), 1227: ("clean", "validate", "slices", "ingest"),
        1228: ("clean", "validate", "slices", "ingest"), 1229: ("slices", "ingest"),
        1230: ("validate",), 1231: ("validate",), 1232: ("validate",),
        1233: ("validate", "split", "slices", "framing"),
        1234: ("validate", "split", "slices", "framing"), 1235: ("validate", "split"),
        1236: ("validate", "slices", "split"), 1237: ("framing",),
        1238: ("split", "slices"), 1239: ("split", "slices"), 1240: ("split", "slices"),
        1241: ("slices",), 1242: ("slices",), 1243: ("slices",),
        1244: ("slices", "ingest"), 1245: ("slices", "ingest"), 1246: ("slices", "ingest"),
        1247: ("slices", "ingest"), 1248: ("slices", "ingest"), 1249: ("slices", "ingest"),
        1250: ("slices",), 1251: ("slices",), 1252: ("slices",),
        1253: ("slices",), 1254: ("slices",), 1255: ("slices",),
        1256: ("slices",), 1257: ("slices",), 1258: ("slices",),
        1259: ("slices", "typing_sql"), 1260: ("slices",), 1261: ("slices",),
        1262: ("images",)}
WEIGHTING = ("compute",)  # modules of weighting/; the others are files of curation/
# For images only the fetch safeguards are sampled, as on 2026-11-25 and 2026-12-04.
IMAGES_SAFEGUARDS = ("x__download", "x__http_get", "x_process_image", "x_fetch_one",
                     "x__image_format", "xǁFetchSettingsǁcheck")
IMAGES_ADDRESS_REFUSAL = ("x_address_refusal", "x__resolve", "x__guarded_socket")
# framing.py's run of 2026-12-06 reached these functions (in mutmut's order), not the others.
FRAMING_RUN = ("xǁ_GzipStreamǁ", "xǁ_Prefixedǁ", "xǁLineBlockǁas_binary")
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


def function_of(name: str) -> str:
    return name.rsplit("__mutmut_", 1)[0].split(".")[-1]


@functools.cache  # each draw leaves out every earlier one: without it, 2^n calls for n draws
def draw(module: str, seed: int) -> tuple[str, ...]:
    """``module`` is a file of curation/ or weighting/ (``compute``), or ``address`` for
    images' address refusal."""
    if module not in DREW[seed]:
        raise SystemExit(f"draw.py: seed {seed} drew {', '.join(DREW[seed])}, not {module}")
    source = "images" if module == "address" else module
    package = "weighting" if module in WEIGHTING else "curation"
    meta = ROOT / "mutants" / package / f"{source}.py.meta"
    names = json.loads(meta.read_text())["exit_code_by_key"]
    before = {f"curation.{source}.{short}" for short in RUN_BEFORE.get(source, [])}
    # an earlier draw's names of the same module are not drawn again
    for earlier in (s for s in SEEDS if s < seed and module in DREW[s]):
        before.update(draw(module, earlier))
    pool = [n for n in names if n not in before]
    if module == "images":
        pool = [n for n in pool if function_of(n) in IMAGES_SAFEGUARDS]
    if module == "address":
        pool = [n for n in pool if function_of(n) in IMAGES_ADDRESS_REFUSAL]
    if module == "framing":
        pool = [n for n in pool if not function_of(n).startswith(FRAMING_RUN)]
    return tuple(random.Random(seed).sample(sorted(pool, key=by_function_and_number), SIZE))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1205, choices=SEEDS)
    parser.add_argument("modules", nargs="+",
                        help="validate, slices, images, address, ingest, typing_sql, clean,"
                             " split, compute or framing")
    args = parser.parse_args()
    for module in args.modules:
        print("\n".join(draw(module, args.seed)))
