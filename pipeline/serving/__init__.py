"""What serves people and programs above the Searcher: completion, correction, SQL views."""
