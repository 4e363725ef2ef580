"""Uploaded bytes to a table of text cells, and tables between services as Arrow."""
