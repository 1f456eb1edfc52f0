"""A comparison: its spec (``spec``) and its protocol (``run``)."""
