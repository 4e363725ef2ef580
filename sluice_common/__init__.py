"""Code shared by the preprocess and trainer services: errors, auth, config, tables."""
