"""The files logged with every model version: the pyfunc and the cell rules."""
