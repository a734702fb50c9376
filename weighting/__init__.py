"""Sample-weighting strategies for curated slices (see issue 4)."""
