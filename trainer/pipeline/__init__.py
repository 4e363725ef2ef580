"""The dev and prod sequences over a table, in memory or on a Dask cluster."""
