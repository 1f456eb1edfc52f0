"""Jobs built from sweeps: ``compare`` (methods under one budget, re-trained over seeds) and
``ablate`` (a factorial grid over seeds), each with its spec and its run."""
