"""A synthetic corpus in exactly the raw Amazon Reviews 2023 layout, with known right answers.

Each item has a hidden quality ``q``. Its star ratings are drawn from a distribution centred
on ``q``; ``rating_number`` is heavy-tailed (Pareto), so most items have fewer than 10
ratings and a few more than 10,000; ``average_rating`` is the one-decimal mean of all its
ratings, hence a noisy target for items with few ratings. The title, features, description
and image carry an imperfect signal of ``q`` plus nuisance variation.

Mess (``mess_rate`` > 0) is planted line by line and recorded in ``ground_truth/mess.parquet``
with the outcome ingest must reach: the line typed correctly, or quarantined with a reason.
The ground truth lies beside the corpus (``OUT/ground_truth``), never inside ``OUT/raw``.

With ``image_attributes`` each image shows a shape in a colour that its title names ("Acme
Sturdy red round lipstick"), for text-to-image search; ``mismatched_images`` (which implies
them) swaps that share of images between pairs of items (each item's image URL
points at the other's file; the two are drawn from the whole corpus, so mostly of two
categories, as a wrong picture mostly shows another kind of product), recorded in
``ground_truth/images.parquet``. With both off the
corpus is byte for byte what it was without them.

Everything is streamed item by item, so memory stays flat, and a seed gives identical bytes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from curation import __version__
from curation.errors import UserError
from curation.paths import META_DIR, REVIEW_DIR, meta_file_name, review_file_name
from curation.synth.mess import (
    META_MESS,
    REVIEW_MESS,
    dumps,
    plant_meta_mess,
    plant_review_mess,
    write_messy,
)
from curation.synth.vocabulary import (
    CATEGORY_TABLE,
    DEFAULT_CATEGORIES,
    IMAGE_COLOURS,
    IMAGE_SHAPES,
    NOUNS,
    RELIST_SUFFIXES,
    REVIEW_TEXT,
    REVIEW_TITLE,
    item_text,
)
from curation.synth.writers import (
    TRUTH_IMAGE_SCHEMA,
    TRUTH_ITEM_SCHEMA,
    TRUTH_MESS_SCHEMA,
    LineWriter,
    TruthWriter,
)

TIME_START_MS = 1_262_304_000_000  # 2010-01-01
TIME_END_MS = 1_693_526_400_000  # 2023-09-01
STAR_SPREAD = 1.1  # std of stars around the hidden quality
RATING_NUMBER_ALPHA = 0.75  # Pareto tail: P(n > x) = x^-alpha


@dataclass(frozen=True)
class SynthConfig:
    n_items: int = 2000
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    seed: int = 0
    mess_rate: float = 0.0
    gzip: bool = False
    images: bool = True
    image_size: int = 64
    image_base_url: str | None = None  # default: file:// URL of OUT/images/
    max_reviews_per_item: int = 400
    review_share: float = 0.5  # share of an item's ratings (up to the cap) that left a review
    users_per_item: float = 2.0
    truncate_gzip: bool = True  # with gzip and mess: cut the last review file short
    # Planted for the audits, each recorded in ground_truth/: a share of items whose
    # average_rating is replaced by a wrong value far from the truth (label errors), and a
    # share relisted as a near-copy (title with a suffix, same text, same image bytes under
    # another URL, its own ratings).
    label_noise: float = 0.0
    near_duplicates: float = 0.0
    # For text-to-image search and the alignment audit (ground_truth/images.parquet).
    image_attributes: bool = False
    mismatched_images: float = 0.0  # share of items whose image is swapped with another's

    def __post_init__(self) -> None:
        unknown = [c for c in self.categories if c not in CATEGORY_TABLE]
        if unknown:
            raise UserError(
                f"unknown synthetic categories {unknown}; choose from {sorted(CATEGORY_TABLE)}"
            )
        for name in ("mess_rate", "label_noise", "near_duplicates", "mismatched_images"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.n_items < len(self.categories):
            raise UserError(f"n_items ({self.n_items}) must be at least one per category")


    @property
    def draws_attributes(self) -> bool:
        return self.image_attributes or self.mismatched_images > 0


# Options added later, left out of a corpus's manifest at their defaults (so a corpus made
# without them keeps its bytes).
_LATER_OPTIONS = {"image_attributes": False, "mismatched_images": 0.0}


@dataclass
class SynthSummary:
    out_dir: Path
    items: int = 0
    meta_lines: int = 0
    review_lines: int = 0
    images: int = 0
    mess_lines: int = 0
    mismatched_images: int = 0
    truncated_file: str | None = None
    files: dict[str, int] = field(default_factory=dict)  # relative path -> lines written


def _base36(n: int, width: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = []
    for _ in range(width):
        n, r = divmod(n, 36)
        out.append(digits[r])
    return "".join(reversed(out))


def _asin(category_index: int, i: int) -> str:
    return "B0" + _base36(category_index * 50_000_000 + i * 7 + 1, 8)


def _shape_mask(shape: str, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float,
                radius: float) -> np.ndarray:
    """Pixels of a shape centred at (cx, cy), about ``radius`` across from the centre."""
    dx, dy = xx - cx, yy - cy
    if shape == "round":
        return dx**2 + dy**2 < radius**2
    if shape == "square":
        return (np.abs(dx) < 0.85 * radius) & (np.abs(dy) < 0.85 * radius)
    if shape == "triangular":  # apex up: inside while |dx| shrinks towards the top
        height = (dy + radius) / (2 * radius)  # 0 at the apex, 1 at the base
        return (height >= 0) & (height <= 1) & (np.abs(dx) < height * radius)
    if shape == "ring-shaped":
        r2 = dx**2 + dy**2
        return (r2 < radius**2) & (r2 > (0.55 * radius) ** 2)
    raise ValueError(f"unknown shape {shape!r}")


def star_probabilities(quality: float) -> np.ndarray:
    """P(star = 1..5) for an item of hidden quality q."""
    stars = np.arange(1, 6)
    logits = -((stars - quality) ** 2) / (2 * STAR_SPREAD**2)
    p = np.exp(logits - logits.max())
    return p / p.sum()


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class _Generator:
    def __init__(self, config: SynthConfig, out_dir: Path) -> None:
        self.config = config
        self.out_dir = out_dir
        self.image_dir = out_dir / "images"
        base = config.image_base_url or (self.image_dir.resolve().as_uri() + "/")
        self.image_base_url = base if base.endswith("/") else base + "/"
        self.n_users = max(50, int(config.n_items * config.users_per_item))
        # Kinds of mess are planted in turn, so a corpus with as many messy lines as kinds
        # holds every kind (a random choice left some out of small test corpora).
        self._planted = {"items": 0, "reviews": 0}

    # -- items -------------------------------------------------------------------------------
    def _image(
        self, rng: np.random.Generator, category_index: int, quality: float, path: Path,
        attributes: tuple[str, str] | None = None,
    ) -> None:
        from PIL import Image

        size = self.config.image_size
        hue = np.array(
            [(category_index * 53) % 256, (category_index * 97) % 256, (category_index * 151) % 256]
        )
        background = np.clip(hue + rng.normal(0, 25, 3), 0, 255)
        pixels = np.empty((size, size, 3), dtype=np.float64)
        pixels[:] = background
        pixels += rng.normal(0, 12, (size, size, 3))  # texture: nuisance
        yy, xx = np.mgrid[0:size, 0:size]
        cx, cy = rng.uniform(0.35, 0.65, 2) * size
        radius = rng.uniform(0.25, 0.4) * size
        shape = (xx - cx) ** 2 + (yy - cy) ** 2 < radius**2
        if attributes is not None:
            shape = _shape_mask(attributes[1], xx, yy, cx, cy, radius)
        brightness = np.clip(0.5 + 0.3 * (quality - 3.9) + rng.normal(0, 0.08), 0.0, 1.0) * 255
        fill = brightness
        if attributes is not None:  # the colour, lighter or darker with the quality as before
            fill = np.array(IMAGE_COLOURS[attributes[0]]) * (0.7 + 0.6 * brightness / 255)
        pixels[shape] = fill + rng.normal(0, 6, (int(shape.sum()), 3))
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            path, format="JPEG", quality=85
        )

    # -- reviews -----------------------------------------------------------------------------
    def _user(self, rng: np.random.Generator) -> str:
        # Skewed towards low indices so some users write many reviews (k-cores are non-trivial).
        index = int(self.n_users * rng.random() ** 2)
        return "A" + _base36(index * 7919 + 13, 9) + "Q"

    def run(self) -> SynthSummary:
        cfg = self.config
        out = self.out_dir
        (out / "raw" / REVIEW_DIR).mkdir(parents=True, exist_ok=True)
        (out / "raw" / META_DIR).mkdir(parents=True, exist_ok=True)
        truth_dir = out / "ground_truth"
        truth_dir.mkdir(parents=True, exist_ok=True)
        summary = SynthSummary(out_dir=out)
        items_truth = TruthWriter(truth_dir / "items.parquet", TRUTH_ITEM_SCHEMA)
        mess_truth = TruthWriter(truth_dir / "mess.parquet", TRUTH_MESS_SCHEMA)
        if cfg.draws_attributes:
            self._images_truth = TruthWriter(truth_dir / "images.parquet", TRUTH_IMAGE_SCHEMA)
        per_category = np.full(len(cfg.categories), cfg.n_items // len(cfg.categories))
        per_category[: cfg.n_items % len(cfg.categories)] += 1
        self._draw_attributes([int(n) for n in per_category])

        from rich.progress import Progress

        with Progress(transient=True) as progress:
            task = progress.add_task("synthesising items", total=cfg.n_items)
            for ci, category in enumerate(cfg.categories):
                self._category(
                    ci, category, int(per_category[ci]), items_truth, mess_truth, summary
                )
                progress.update(task, advance=int(per_category[ci]))
        items_truth.close()
        mess_truth.close()
        if cfg.draws_attributes:
            self._images_truth.close()
        if cfg.gzip and cfg.mess_rate > 0 and cfg.truncate_gzip:
            target = out / "raw" / REVIEW_DIR / review_file_name(cfg.categories[-1], gz=True)
            size = target.stat().st_size
            with open(target, "r+b") as fh:
                fh.truncate(int(size * 0.85))
            summary.truncated_file = str(target.relative_to(out))
        manifest = {
            "generator": "curate synth",
            "version": __version__,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()
                       if _LATER_OPTIONS.get(k, object()) != v},
            "image_base_url": self.image_base_url,
            "items": summary.items,
            "meta_lines": summary.meta_lines,
            "review_lines": summary.review_lines,
            "images": summary.images,
            "mess_lines": summary.mess_lines,
            "truncated_file": summary.truncated_file,
            **({"mismatched_images": summary.mismatched_images} if cfg.draws_attributes
               else {}),
            "files": summary.files,
        }
        (truth_dir / "manifest.json").write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        )
        return summary

    def _category(
        self,
        ci: int,
        category: str,
        n_items: int,
        items_truth: TruthWriter,
        mess_truth: TruthWriter,
        summary: SynthSummary,
    ) -> None:
        cfg = self.config
        display, mean_quality = CATEGORY_TABLE[category]
        rng = np.random.default_rng([cfg.seed, ci])
        plant = np.random.default_rng([cfg.seed, ci, 7])  # apart, so rng's stream is unchanged
        meta_rel = f"raw/{META_DIR}/{meta_file_name(category, cfg.gzip)}"
        review_rel = f"raw/{REVIEW_DIR}/{review_file_name(category, cfg.gzip)}"
        meta_out = LineWriter(self.out_dir / meta_rel, cfg.gzip)
        review_out = LineWriter(self.out_dir / review_rel, cfg.gzip)
        attributes = self._attributes.get(ci, [])
        partner = {i: other for (c, i), other in self._partner.items() if c == ci}

        def record(
            file: str,
            kind: str,
            line: int,
            mess: str,
            fld: str | None,
            asin: str,
            expected: str,
            reason: str | None,
        ) -> None:
            summary.mess_lines += 1
            mess_truth.add(
                {
                    "file": file,
                    "kind": kind,
                    "line": line,
                    "mess": mess,
                    "field": fld,
                    "parent_asin": asin,
                    "expected": expected,
                    "expected_reason": reason,
                }
            )

        for i in range(n_items):
            asin = _asin(ci, i)
            quality = float(np.clip(rng.normal(mean_quality, 0.6), 1.0, 5.0))
            probs = star_probabilities(quality)
            true_mean = float((np.arange(1, 6) * probs).sum())
            if rng.random() < 0.02:
                n = 0
            else:
                n = int(min(rng.random() ** (-1.0 / RATING_NUMBER_ALPHA), 2_000_000))
            counts = rng.multinomial(n, probs) if n else np.zeros(5, dtype=np.int64)
            average = round(float((np.arange(1, 6) * counts).sum()) / n, 1) if n else None
            clean_average, label_replaced = average, False
            if cfg.label_noise and average is not None and plant.random() < cfg.label_noise:
                # far from the truth: a good item shown as bad, a bad one as good
                low = true_mean >= 3.0
                average = round(float(plant.uniform(1.0, 1.8) if low else
                                      plant.uniform(4.2, 5.0)), 1)
                label_replaced = True
            k = int(rng.binomial(min(n, cfg.max_reviews_per_item), cfg.review_share)) if n else 0
            stars = (
                np.repeat(np.arange(1, 6), rng.multivariate_hypergeometric(counts, k)) if k else []
            )
            stars = rng.permutation(stars) if k else stars
            own = attributes[i] if attributes else None
            title, features, description, brand = item_text(rng, category, quality, own)
            has_image = rng.random() > 0.03 or i in partner  # a swapped pair has both images
            image_rel = f"images/{asin[-2:]}/{asin}.jpg"
            shown_rel = image_rel
            if i in partner:  # the URL points at the partner's file
                other = _asin(*partner[i])
                shown_rel = f"images/{other[-2:]}/{other}.jpg"
                summary.mismatched_images += 1
            images: list[dict[str, Any]] = []
            if has_image:
                if cfg.images:
                    self._image(rng, ci, quality, self.out_dir / image_rel, own)
                    summary.images += 1
                url = self.image_base_url + shown_rel[len("images/") :]
                images.append(
                    {
                        "thumb": url,
                        "large": url,
                        "variant": "MAIN",
                        "hi_res": None if rng.random() < 0.3 else url,
                    }
                )
            launch = int(rng.integers(TIME_START_MS, TIME_END_MS - 86_400_000))
            record_meta: dict[str, Any] = {
                "main_category": display,
                "title": title,
                "average_rating": average,
                "rating_number": n,
                "features": features,
                "description": description,
                "price": None if rng.random() < 0.4 else round(float(rng.lognormal(3.0, 0.8)), 2),
                "images": images,
                "videos": [],
                "store": brand,
                "categories": []
                if rng.random() < 0.5
                else [display, str(rng.choice(NOUNS[category])).title()],
                "details": {
                    "Brand": brand,
                    "Date First Available": f"{2010 + launch % 13}-0{1 + launch % 9}-1{launch % 9}",
                },
                "parent_asin": asin,
                "bought_together": None,
            }
            # Items with no metadata line: their reviews are orphans (a real-file case).
            has_meta = not (cfg.mess_rate > 0 and rng.random() < cfg.mess_rate / 2)
            if has_meta:
                self._write_meta(rng, record_meta, meta_out, meta_rel, record)
            items_truth.add(
                {
                    "parent_asin": asin,
                    "category": category,
                    "main_category": display,
                    "true_quality": quality,
                    "true_mean_rating": true_mean,
                    "rating_number": n,
                    "average_rating": average,
                    "n_reviews": k,
                    "has_meta": has_meta,
                    "has_image": has_image,
                    "image_path": image_rel if has_image and cfg.images else None,
                    "label_replaced": label_replaced,
                    "clean_average_rating": clean_average,
                    "near_duplicate_of": None,
                }
            )
            if attributes:
                shown = self._attributes[partner[i][0]][partner[i][1]] if i in partner \
                    else own if has_image else (None, None)
                self._images_truth.add({
                    "parent_asin": asin, "colour": own[0], "shape": own[1],
                    "has_image": has_image, "shown_colour": shown[0], "shown_shape": shown[1],
                    "image_of": _asin(*partner[i]) if i in partner else None,
                })
            # a swapped item is not relisted: its copy's image would be a file not written yet
            if has_meta and cfg.near_duplicates and plant.random() < cfg.near_duplicates \
                    and i not in partner:
                self._near_copy(plant, ci, i, record_meta, quality, image_rel, meta_out,
                                items_truth, summary)
                if attributes:  # the copy shows what the item shows
                    self._images_truth.add({
                        "parent_asin": "B1" + asin[2:], "colour": own[0], "shape": own[1],
                        "has_image": has_image,
                        "shown_colour": own[0] if has_image else None,
                        "shown_shape": own[1] if has_image else None, "image_of": None,
                    })
            summary.items += 1
            for star in stars:
                t = int(min(launch + rng.exponential(120 * 86_400_000), TIME_END_MS))
                review = {
                    "rating": float(star),
                    "title": REVIEW_TITLE[int(star)],
                    "text": str(rng.choice(REVIEW_TEXT[int(star)])),
                    "images": [],
                    "asin": asin,
                    "parent_asin": asin,
                    "user_id": self._user(rng),
                    "timestamp": t,
                    "helpful_vote": int(rng.geometric(0.6) - 1),
                    "verified_purchase": bool(rng.random() < 0.85),
                }
                self._write_review(rng, review, review_out, review_rel, record, has_meta)
        meta_out.close()
        review_out.close()
        summary.files[meta_rel] = meta_out.lines
        summary.files[review_rel] = review_out.lines
        summary.meta_lines += meta_out.lines
        summary.review_lines += review_out.lines

    def _near_copy(self, plant, ci, i, record, quality, image_rel, meta_out, items_truth,
                   summary) -> None:  # type: ignore[no-untyped-def]
        """Relist an item: another parent_asin, a suffixed title, the same text and image
        bytes under another URL, its own ratings."""
        asin = "B1" + _asin(ci, i)[2:]
        copy = json.loads(json.dumps(record))
        copy["parent_asin"] = asin
        copy["title"] = f"{record['title']} {plant.choice(RELIST_SUFFIXES)}"
        n = int(min(plant.random() ** (-1.0 / RATING_NUMBER_ALPHA), 2_000_000))
        counts = plant.multinomial(n, star_probabilities(quality))
        copy["rating_number"] = n
        copy["average_rating"] = round(float((np.arange(1, 6) * counts).sum()) / n, 1)
        copy_rel = None
        if record["images"]:
            copy_rel = f"images/{asin[-2:]}/{asin}.jpg"
            source = self.out_dir / image_rel
            if source.exists():
                target = self.out_dir / copy_rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(source.read_bytes())
                summary.images += 1
            url = self.image_base_url + copy_rel[len("images/") :]
            copy["images"] = [{**img, "thumb": url, "large": url,
                               "hi_res": url if img.get("hi_res") else None}
                              for img in record["images"]]
        meta_out.write(dumps(copy))
        items_truth.add({
            "parent_asin": asin, "category": self._category_name(ci),
            "main_category": record["main_category"], "true_quality": quality,
            "true_mean_rating": float((np.arange(1, 6) * star_probabilities(quality)).sum()),
            "rating_number": n, "average_rating": copy["average_rating"], "n_reviews": 0,
            "has_meta": True, "has_image": bool(record["images"]),
            "image_path": copy_rel if self.config.images else None, "label_replaced": False,
            "clean_average_rating": copy["average_rating"],
            "near_duplicate_of": record["parent_asin"],
        })
        summary.items += 1

    def _draw_attributes(self, per_category: list[int]) -> None:
        """Each item's (colour, shape), per category from a stream of its own, and the swapped
        pairs ((category, item) -> (category, item)) over the whole corpus; none without image
        attributes."""
        cfg = self.config
        self._attributes: dict[int, list[tuple[str, str]]] = {}
        self._partner: dict[tuple[int, int], tuple[int, int]] = {}
        if not cfg.draws_attributes:
            return
        names = list(IMAGE_COLOURS)
        for ci, n_items in enumerate(per_category):
            draw = np.random.default_rng([cfg.seed, ci, 11])
            colours = draw.integers(0, len(IMAGE_COLOURS), n_items)
            shapes = draw.integers(0, len(IMAGE_SHAPES), n_items)
            self._attributes[ci] = [(names[c], IMAGE_SHAPES[s])
                                    for c, s in zip(colours, shapes, strict=True)]
        slots = [(ci, i) for ci, n_items in enumerate(per_category) for i in range(n_items)]
        pairs = round(cfg.mismatched_images * len(slots) / 2)
        chosen = np.random.default_rng([cfg.seed, 11]).permutation(len(slots))[: 2 * pairs]
        for a, b in zip(chosen[0::2], chosen[1::2], strict=True):
            self._partner[slots[a]], self._partner[slots[b]] = slots[b], slots[a]

    def _category_name(self, ci: int) -> str:
        return self.config.categories[ci]

    # -- mess --------------------------------------------------------------------------------
    def _write_meta(self, rng, rec, out: LineWriter, rel: str, record) -> None:
        asin = rec["parent_asin"]
        if not (self.config.mess_rate > 0 and rng.random() < self.config.mess_rate):
            out.write(dumps(rec))
            return
        mess = META_MESS[self._planted["items"] % len(META_MESS)]
        self._planted["items"] += 1
        fld, expected, reason = plant_meta_mess(rng, rec, mess)
        write_messy(rng, rec, asin, mess, fld, expected, reason, out, rel, "items", record)

    def _write_review(self, rng, rec, out: LineWriter, rel: str, record, has_meta: bool) -> None:
        asin = rec["parent_asin"]
        messy = self.config.mess_rate > 0 and rng.random() < self.config.mess_rate
        if not messy:
            number = out.write(dumps(rec))
            if not has_meta:
                record(rel, "reviews", number, "orphan_review", None, asin, "typed", None)
            return
        mess = REVIEW_MESS[self._planted["reviews"] % len(REVIEW_MESS)]
        self._planted["reviews"] += 1
        fld, expected, reason = plant_review_mess(rng, rec, mess)
        write_messy(rng, rec, asin, mess, fld, expected, reason, out, rel, "reviews", record)


def synthesize(out_dir: str | Path, config: SynthConfig | None = None) -> SynthSummary:
    """Write a synthetic corpus to ``out_dir`` (raw/, images/, ground_truth/)."""
    return _Generator(config or SynthConfig(), Path(out_dir)).run()
