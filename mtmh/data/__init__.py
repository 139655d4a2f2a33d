"""Interaction logs and items: schema, validation, datasets, time split and training pairs."""
