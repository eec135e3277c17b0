"""Pairs stage: (query, passage, hard negative) triples mined from the structure of the training documents."""
