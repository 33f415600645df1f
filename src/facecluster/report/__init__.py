"""What a run shows a person: static figures (PNG) and, later, the HTML page."""
