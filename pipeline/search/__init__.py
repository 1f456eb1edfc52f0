"""What a sweep searches: declarative spaces, Optuna searchers, coordinate descent."""
