"""Reading corpora into one validated documents table, with a quarantine for bad records."""
