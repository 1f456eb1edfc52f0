"""What a run leaves on disk: output folders and their lock, the manifest, safe names."""
