"""Simulated inputs for tests, the demo and benchmarks: SICD scenes of a landscape (scene,
sicd, spec), its ground, terrain and optical tiles, and scenes shaped like a real product
(like)."""
