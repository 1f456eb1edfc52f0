"""An ablation: its grid (``grid``) and its run with main effects (``run``)."""
