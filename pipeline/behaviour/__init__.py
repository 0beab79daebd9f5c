"""Learning from behaviour: sessions read from the query log, click models, training labels from clicks, and the
click simulator that measures all of it offline (docs/behaviour.md)."""
