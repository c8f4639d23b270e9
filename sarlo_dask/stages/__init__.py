"""The build's stages: scenes standardized to 0.8 m stores, tiles cut and paired with the
optical image, captions; each a plan of units the driver runs, with its preflight checks and
what a resumed build may reuse."""
