"""`jsedge <group> ...` management commands: clients for any NATS server (see jsedge.cli.main)."""
