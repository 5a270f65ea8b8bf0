"""Network definitions, one file per model family."""
