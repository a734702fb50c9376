"""The compact dual-encoder trainer and the study runner (see issues 5 and 6)."""
