"""Routing (layer 2): the sublist, client connections, auth, listeners, routes and leaf nodes."""
