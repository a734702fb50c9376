"""``curate synth``: a synthetic corpus in the raw Amazon Reviews 2023 layout, with ground truth.

- ``vocabulary``: the words, and the text signal of an item's hidden quality;
- ``mess``: the defects planted line by line, and what ingest must do with each;
- ``writers``: streaming line and ground-truth writers;
- ``corpus``: items, reviews, images and near-copies, written category by category;
- ``image_server``: a local HTTP server for the images, with planted faults.
"""

from curation.synth.corpus import SynthConfig, SynthSummary, star_probabilities, synthesize
from curation.synth.mess import META_MESS, REVIEW_MESS
from curation.synth.vocabulary import CATEGORY_TABLE, DEFAULT_CATEGORIES

__all__ = [
    "CATEGORY_TABLE",
    "DEFAULT_CATEGORIES",
    "META_MESS",
    "REVIEW_MESS",
    "SynthConfig",
    "SynthSummary",
    "star_probabilities",
    "synthesize",
]
