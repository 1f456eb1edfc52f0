"""margin-tune's sweeps, tracking, reports and CLI around the trainables."""
