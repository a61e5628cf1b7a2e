"""Checkpoints: the atomic store and its manifest, when a run saves, where a run resumes."""
