"""The local das-Peak Streaming emulator behind `dasctl serve` (the `[server]` extra).

It follows docs/protocol.md to the letter and shares only constants with dasctl's client, never code,
so that it catches client mistakes instead of repeating them.
"""
