"""Run folder, manifest and resume rules."""
