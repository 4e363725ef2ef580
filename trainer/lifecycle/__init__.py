"""A model version's life: the dev and prod phases, registry, promotion, serving, signing."""
