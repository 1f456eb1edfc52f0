"""What results become: statistics, tables, plots and the MLflow report; no Ray, no torch."""
