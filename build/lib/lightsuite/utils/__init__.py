"""Plumbing shared by the entry points: building objects from config, writing run files."""
