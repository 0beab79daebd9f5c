"""Text analysis shared by documents and queries."""
