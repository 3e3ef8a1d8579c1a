"""Layer 3: message stores for JetStream streams and consumer state (memstore, filestore, the
segment codec twins). Contract: `jsedge.store.base`."""
