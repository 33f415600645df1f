"""What a run shows a person: static figures (PNG) and the self-contained page, report.html."""
