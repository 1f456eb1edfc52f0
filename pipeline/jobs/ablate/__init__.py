"""An ablation: its grid (``grid``), its input check (``plan``) and its run with main effects
(``run``)."""
