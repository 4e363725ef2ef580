"""HTTP views of the trainer: the only Flask modules of the service."""
