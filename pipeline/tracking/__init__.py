"""MLflow: the tracker that writes runs, and the vocabulary of tags every reader shares."""
