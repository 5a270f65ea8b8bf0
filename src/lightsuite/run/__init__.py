"""One run's life: build its objects, write its files, checkpoint, resume, log."""
