"""Clustered JetStream (layer 6): the Raft core and its driver, the meta group, replicated streams."""
