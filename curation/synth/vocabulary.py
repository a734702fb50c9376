"""The words and the signal: what an item's title, features and description say, and how
strongly they follow its hidden quality (quality words mixed with nuisance words)."""

from __future__ import annotations

import math

import numpy as np

# (file category, main_category display name, mean hidden quality)
CATEGORY_TABLE: dict[str, tuple[str, float]] = {
    "All_Beauty": ("All Beauty", 3.95),
    "Toys_and_Games": ("Toys & Games", 4.15),
    "Health_and_Personal_Care": ("Health & Personal Care", 3.85),
    "Video_Games": ("Video Games", 4.05),
    "Office_Products": ("Office Products", 4.2),
    "Gift_Cards": ("Gift Cards", 4.5),
}
DEFAULT_CATEGORIES = tuple(CATEGORY_TABLE)

NOUNS = {
    "All_Beauty": ["lipstick", "face serum", "hair brush", "nail polish", "eyeliner", "lotion"],
    "Toys_and_Games": ["puzzle", "building set", "plush bear", "board game", "toy car", "kite"],
    "Health_and_Personal_Care": ["thermometer", "pill organizer", "massager", "scale", "brace"],
    "Video_Games": ["controller", "headset", "charging dock", "game case", "keyboard", "mouse"],
    "Office_Products": ["stapler", "notebook", "desk lamp", "pen set", "file organizer", "chair"],
    "Gift_Cards": ["gift card", "e-gift card", "gift box card", "reload card"],
}
POSITIVE = [
    "premium",
    "durable",
    "sturdy",
    "reliable",
    "excellent",
    "well-made",
    "high-quality",
    "long-lasting",
    "solid",
    "superb",
    "dependable",
    "refined",
]
NEGATIVE = [
    "flimsy",
    "cheap",
    "basic",
    "fragile",
    "mediocre",
    "thin",
    "loose",
    "no-frills",
    "plain",
    "wobbly",
    "generic",
    "rough",
]
NUISANCE = [
    "red",
    "blue",
    "black",
    "white",
    "large",
    "small",
    "compact",
    "classic",
    "modern",
    "travel",
    "family",
    "deluxe",
    "mini",
    "pink",
    "green",
    "silver",
]
BRANDS = [
    "Acme",
    "Norda",
    "Velto",
    "Brisk",
    "Kappa",
    "Lumen",
    "Orbit",
    "Pavo",
    "Quill",
    "Rhea",
    "Sable",
    "Tarn",
    "Umber",
    "Vanta",
    "Wick",
    "Yarrow",
    "Zephyr",
    "Mossy",
    "Ferro",
    "Halo",
]
FEATURE_QUALITY = [
    "{adj} materials built for everyday use",
    "Made with {adj} components",
    "{Adj} finish that owners notice",
    "Feels {adj} in the hand",
]
FEATURE_NUISANCE = [
    "Available in {nuis} colour",
    "Includes {k} pieces",
    "Fits most {nuis} spaces",
    "Ships in a {nuis} box",
    "Measures {k} inches across",
]
REVIEW_TEXT = {
    1: ["Broke after a day.", "Terrible, do not buy.", "Waste of money."],
    2: ["Not great, cheaply made.", "Disappointed with it.", "Works, barely."],
    3: ["It is okay for the price.", "Average, nothing special.", "Does the job."],
    4: ["Good product, works well.", "Pretty happy with it.", "Solid choice."],
    5: ["Love it, excellent quality!", "Perfect, would buy again.", "Exceeded expectations."],
}
REVIEW_TITLE = {1: "One Star", 2: "Two Stars", 3: "Three Stars", 4: "Four Stars", 5: "Five Stars"}

# What a synthetic image can show (``curate synth --image-attributes``): a shape in a colour
# on the category's background, both named in the title.
IMAGE_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (205, 30, 30),
    "green": (30, 165, 60),
    "blue": (35, 65, 210),
    "yellow": (235, 215, 40),
    "purple": (135, 45, 170),
    "orange": (245, 135, 20),
    "black": (20, 20, 20),
    "white": (242, 242, 242),
}
IMAGE_SHAPES = ("round", "square", "triangular", "ring-shaped")

RELIST_SUFFIXES = ("(Pack of 2)", "- Newer Version", "Value Edition", "(Renewed)")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def quality_word(rng: np.random.Generator, quality: float) -> str:
    if rng.random() < 0.15:  # nuisance instead of signal
        return str(rng.choice(NUISANCE))
    positive = rng.random() < _sigmoid(3.0 * (quality - 3.9))
    return str(rng.choice(POSITIVE if positive else NEGATIVE))

def item_text(
    rng: np.random.Generator, category: str, quality: float,
    attributes: tuple[str, str] | None = None,
) -> tuple[str, list[str], list[str], str]:
    """(title, features, description, brand). ``attributes`` (colour, shape): the title names
    what the item's image shows in place of its nuisance word (the same draws are made, so
    everything else about the item is unchanged)."""
    brand = str(rng.choice(BRANDS))
    noun = str(rng.choice(NOUNS[category]))
    word = quality_word(rng, quality).capitalize()
    nuisance = str(rng.choice(NUISANCE))  # drawn either way: the rest of the stream is kept
    if attributes is not None:
        nuisance = " ".join(attributes)
    title = f"{brand} {word} {nuisance} {noun}"
    if rng.random() < 0.5:
        title += f", {int(rng.integers(1, 6)) * 10} Count"
    features = []
    for _ in range(int(rng.integers(1, 6))):
        if rng.random() < 0.6:
            adj = quality_word(rng, quality)
            template = str(rng.choice(FEATURE_QUALITY))
            features.append(template.format(adj=adj, Adj=adj.capitalize()))
        else:
            template = str(rng.choice(FEATURE_NUISANCE))
            features.append(
                template.format(nuis=rng.choice(NUISANCE), k=int(rng.integers(2, 40)))
            )
    description = []
    for _ in range(int(rng.integers(0, 3))):
        description.append(
            f"This {quality_word(rng, quality)} {noun} from {brand} comes in a "
            f"{rng.choice(NUISANCE)} style. Customers describe it as "
            f"{quality_word(rng, quality)}."
        )
    return title, features, description, brand
