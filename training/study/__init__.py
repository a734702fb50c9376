"""``curate study``: a grid of (fraction x weighting x seed) runs and what they say.

- ``config``: the study's TOML config, its defaults and the template;
- ``grid``: the planned runs, run one after another with completion markers;
- ``scaling``: power-law fits, bootstrap intervals, the data needed to reach a target;
- ``report``: the analysis (results, paired differences, fits); ``pages``: its rendering.
"""
