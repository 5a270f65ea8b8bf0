"""Run dirs on disk into tables, figures and a page; reads files only."""
