"""The process around a command: exit codes, signals, credentials kept out of files."""
