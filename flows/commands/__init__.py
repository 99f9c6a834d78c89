"""The command line, one module per command group: parse argv, call one flow or library function, print.

Each module defines ``register(subparsers)``; ``flows.cli.COMMAND_MODULES`` lists them.
"""
