"""Sharded serving: an index partitioned into document shards, a coordinator, and their Ray Serve app."""
