"""dasctl: enroll speakers in das-Peak Streaming from recorded calls."""

__version__ = "0.1.0"
