"""A comparison: its spec (``spec``), what its input check needs (``plan``) and its protocol
(``run``)."""
