"""One module per command; each reads top to bottom and returns a result the CLI renders."""
