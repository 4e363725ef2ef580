"""Data by reference: files named by a `data_uri`, read and written as tables."""
