"""`jsedge pub` (see jsedge.cli.pubsub)."""


def main(argv: list[str]) -> int:
    from jsedge.cli.pubsub import main as run

    return run("pub", argv)
