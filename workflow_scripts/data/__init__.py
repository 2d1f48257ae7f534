"""Data: readers for every dataset format, conversation templates, datasets."""
